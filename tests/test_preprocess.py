"""runtime/preprocess.py: decoding limits and modes, pixel normalisation, text checks, tokenisation."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from crossguard.runtime import preprocess
from crossguard.runtime.preprocess import (IMAGE_SIZE, ImageLimits, InputError, TextTokenizer, blank_image,
                                           check_text, image_to_tensor, images_to_batch, load_image)


def encode(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def test_inputs_of_every_kind_decode_to_rgb(tmp_path):
    rgb = Image.new("RGB", (30, 20), (10, 20, 30))
    path = tmp_path / "a.png"
    rgb.save(path)
    for source in (path, str(path), encode(rgb), bytearray(encode(rgb)), memoryview(encode(rgb)), rgb,
                   np.asarray(rgb)):
        out = load_image(source)
        assert out.mode == "RGB" and out.size == (30, 20) and out.getpixel((0, 0)) == (10, 20, 30)


def test_modes_flatten():
    rgba = load_image(Image.new("RGBA", (4, 4), (0, 0, 0, 0)))
    assert rgba.getpixel((0, 0)) == (255, 255, 255)  # transparency composited on white
    deep = Image.fromarray((np.arange(16, dtype=np.uint16) * 4000).reshape(4, 4))
    flat = load_image(encode(deep))
    assert flat.getpixel((0, 0)) == (0, 0, 0) and flat.getpixel((3, 3)) == (255, 255, 255)
    cmyk = load_image(encode(Image.new("CMYK", (8, 8), (0, 0, 0, 0)), "JPEG"))
    assert cmyk.mode == "RGB" and min(cmyk.getpixel((0, 0))) > 240
    frames = [Image.new("P", (8, 8), i) for i in range(3)]
    gif = io.BytesIO()
    frames[0].save(gif, format="GIF", save_all=True, append_images=frames[1:])
    assert load_image(gif.getvalue()).size == (8, 8)  # first frame of an animation
    assert load_image(np.ones((5, 5), np.float32)).getpixel((0, 0)) == (255, 255, 255)


def test_limits_and_corruption(tmp_path):
    with pytest.raises(InputError, match="empty"):
        load_image(b"")
    with pytest.raises(InputError, match="limit"):
        load_image(encode(Image.new("L", (100, 100))), ImageLimits(max_pixels=5000))
    with pytest.raises(InputError, match="bytes"):
        load_image(b"x" * 100, ImageLimits(max_bytes=10))
    with pytest.raises(InputError, match="cannot decode"):
        load_image(encode(Image.new("RGB", (64, 64)))[:40])
    with pytest.raises(InputError, match="not found"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(InputError, match="unsupported image type"):
        load_image(3.14)
    with pytest.raises(InputError, match="shape"):
        load_image(np.zeros((2, 2, 2)))
    big = load_image(Image.new("RGB", (4000, 1000)))
    assert max(big.size) == preprocess.MAX_SIDE_KEPT


@pytest.mark.parametrize("call, code, too_large", [
    (lambda: load_image(b""), "invalid_image", False),
    (lambda: load_image(encode(Image.new("L", (100, 100))), ImageLimits(max_pixels=5000)), "image_too_large", True),
    (lambda: load_image(b"x" * 100, ImageLimits(max_bytes=10)), "image_too_large", True),
    (lambda: load_image(encode(Image.new("RGB", (64, 64)))[:40]), "invalid_image", False),
    (lambda: load_image(3.14), "invalid_image", False),
    (lambda: check_text("x" * 11, max_chars=10), "text_too_long", True),
    (lambda: check_text(b"\xc3\x28"), "invalid_text", False),
    (lambda: check_text(["list"]), "invalid_text", False),
])
def test_input_errors_carry_a_code(call, code, too_large):
    """Programs (the server's status codes) read ``code``/``too_large``, not the message text."""
    with pytest.raises(InputError) as info:
        call()
    assert info.value.code == code and info.value.too_large is too_large


def test_pixels():
    x = image_to_tensor(Image.new("RGB", (50, 80), (255, 0, 127)))
    assert x.shape == (3, IMAGE_SIZE, IMAGE_SIZE) and x.dtype == np.float32
    assert x[0].max() == pytest.approx((1 - 0.498) / 0.502) and x[1].min() == pytest.approx(-0.498 / 0.502)
    batch = images_to_batch([blank_image(), Image.new("RGB", (9, 9))])
    assert batch.shape == (2, 3, IMAGE_SIZE, IMAGE_SIZE) and batch[0].min() > 0.99


def test_text_checks():
    assert check_text(None) == "" and check_text("a\x00b") == "a b"
    assert check_text("héllo".encode()) == "héllo"
    with pytest.raises(InputError, match="UTF-8"):
        check_text(b"\xc3\x28")
    with pytest.raises(InputError, match="characters"):
        check_text("x" * 11, max_chars=10)
    with pytest.raises(InputError, match="string"):
        check_text(["list"])


def test_tokenizer_pads_and_truncates(tmp_path):
    from _runtime_tiny import VOCAB, write_tokenizer

    write_tokenizer(tmp_path / "tokenizer.json")
    tok = TextTokenizer(tmp_path / "tokenizer.json", max_tokens=8)
    ids, mask = tok(["how to make a bomb", "", "cake " * 20])
    assert ids.shape == mask.shape == (3, 8) and ids.dtype == np.int64
    assert ids[0, :5].tolist() == [VOCAB.index(w) for w in "how to make a bomb".split()]
    assert mask.sum(axis=1).tolist() == [5, 0, 8] and ids[1].tolist() == [0] * 8
