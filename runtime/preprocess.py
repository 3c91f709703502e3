"""Preprocessing defined once, for training and screening alike: image decoding, pixels, tokens.

numpy + Pillow + tokenizers only (the runtime imports no torch). Training code calls the same functions,
so the guard sees identical pixels and tokens at training and at screening time.
"""
from __future__ import annotations

import io
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageFile, ImageOps

ImageInput = Union[str, os.PathLike, bytes, bytearray, memoryview, Image.Image, np.ndarray]

# EfficientNet-Lite was trained on ImageNet with inputs scaled to [-1, 1] (mean 0.5, std 0.5 of [0, 1]).
IMAGE_SIZE = 224
IMAGE_MEAN = (0.498, 0.498, 0.498)
IMAGE_STD = (0.502, 0.502, 0.502)
MAX_IMAGE_PIXELS = 40_000_000  # decoded pixels we accept (a 6,300 x 6,300 image); more is refused
MAX_IMAGE_BYTES = 25 * 1024 * 1024
MAX_SIDE_KEPT = 1600  # images are shrunk to this longest side right after decoding (OCR needs no more)
MAX_TEXT_CHARS = 20_000
TEXT_MAX_TOKENS = 64


class InputError(ValueError):
    """The caller's input cannot be screened (corrupt image, wrong type, text too long, ...).

    ``code`` names the problem for programs (the server maps it to its error code and HTTP status):
    ``invalid_image``, ``image_too_large``, ``invalid_text``, ``text_too_long`` or ``invalid_input``.
    """

    TOO_LARGE = frozenset({"image_too_large", "text_too_long"})

    def __init__(self, message: str, code: str = "invalid_input"):
        super().__init__(message)
        self.code = code

    @property
    def too_large(self) -> bool:
        return self.code in self.TOO_LARGE


@dataclass(frozen=True)
class ImageLimits:
    max_pixels: int = MAX_IMAGE_PIXELS
    max_bytes: int = MAX_IMAGE_BYTES
    max_side: int = MAX_SIDE_KEPT


_WIDE_MODES = ("I;16", "I;16B", "I;16L", "I", "F")


def _shrink(img: Image.Image, max_side: int) -> Image.Image:
    """A new image no larger than ``max_side``, shrunk in the decoded mode before any widening (to RGB, RGBA or
    float), so memory stays near the decoded image whatever its bit depth or mode. Bilevel and palette images
    become L / RGB(A) first: Pillow shrinks those modes by nearest neighbour, which drops thin strokes of text."""
    if max(img.size) <= max_side:
        return img
    if img.mode == "1":
        img = img.convert("L")
    elif img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    scale = max_side / max(img.size)
    size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    return img.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)


def _value_range(img: Image.Image) -> tuple[float, float] | None:
    """(lowest, highest) value of a single-band 16/32-bit or float image, None when not finite (NaN)."""
    lo, hi = img.getextrema()
    return (float(lo), float(hi)) if np.isfinite(lo) and np.isfinite(hi) else None


def _flatten_to_rgb(img: Image.Image, value_range: tuple[float, float] | None = None) -> Image.Image:
    """Any mode (P, LA, RGBA, CMYK, I;16, F, 1, ...) to RGB; transparency composited on white. 16/32-bit and float
    images are stretched from ``value_range`` (that of the full image before shrinking; default: this image's)."""
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, (255, 255, 255))
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    if img.mode in _WIDE_MODES:
        arr = np.asarray(img, dtype=np.float32)
        lo, hi = value_range or _value_range(img) or (float(np.nanmin(arr)), float(np.nanmax(arr)))
        scaled = np.zeros_like(arr) if hi <= lo else (arr - lo) * np.float32(255.0 / (hi - lo))
        return Image.fromarray(np.clip(np.nan_to_num(scaled), 0, 255).astype(np.uint8), "L").convert("RGB")
    return img.convert("RGB")


def load_image(source: ImageInput, limits: ImageLimits = ImageLimits()) -> Image.Image:
    """Decode any supported input to an RGB PIL image no larger than ``limits.max_side``.

    Memory: the decoded image plus at most its RGBA size at full resolution (palette and bilevel images);
    everything wider (RGB, float) is made after shrinking.

    Raises ``InputError`` with a clear message for wrong types, missing files, corrupt or truncated
    data, decompression bombs and zero-size images. Animated images use their first frame.
    """
    if isinstance(source, Image.Image):
        img = source
    elif isinstance(source, np.ndarray):
        img = _image_from_array(source)
    else:
        if isinstance(source, (bytes, bytearray, memoryview)):
            data = bytes(source)
            if not data:
                raise InputError("image is empty (0 bytes)", code="invalid_image")
            if len(data) > limits.max_bytes:
                raise InputError(f"image is {len(data)} bytes; the limit is {limits.max_bytes}", code="image_too_large")
            fp: io.BytesIO | str = io.BytesIO(data)
        elif isinstance(source, (str, os.PathLike)):
            path = Path(source)
            if path.is_dir():
                raise InputError(f"image path is a directory, not an image file: {path}", code="invalid_image")
            if not path.is_file():
                raise InputError(f"image file not found: {path}", code="invalid_image")
            size = path.stat().st_size
            if size == 0:
                raise InputError(f"image file is empty: {path}", code="invalid_image")
            if size > limits.max_bytes:
                raise InputError(f"image file is {size} bytes; the limit is {limits.max_bytes}",
                                 code="image_too_large")
            fp = str(path)
        else:
            raise InputError(f"unsupported image type {type(source).__name__}: give a path, bytes, "
                             "a PIL image or a numpy array", code="invalid_image")
        img = _open_checked(fp, limits)
    if img.width == 0 or img.height == 0:
        raise InputError("image has zero width or height", code="invalid_image")
    if img.width * img.height > limits.max_pixels:
        raise InputError(f"image has {img.width}x{img.height} pixels; the limit is {limits.max_pixels}",
                         code="image_too_large")
    value_range = _value_range(img) if img.mode in _WIDE_MODES else None
    return _flatten_to_rgb(_shrink(img, limits.max_side), value_range)


def _open_checked(fp, limits: ImageLimits) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(fp)
            w, h = img.size
            if w * h > limits.max_pixels:
                raise InputError(f"image declares {w}x{h} pixels; the limit is {limits.max_pixels}",
                                 code="image_too_large")
            if getattr(img, "is_animated", False):
                img.seek(0)
            if img.format == "JPEG":
                img.draft("RGB", (limits.max_side, limits.max_side))  # decode at reduced scale: fast
            ImageFile.LOAD_TRUNCATED_IMAGES = False
            img.load()
            return ImageOps.exif_transpose(img) or img
    except InputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise InputError(f"image refused as a decompression bomb: {e}", code="image_too_large") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:  # PIL's errors for corrupt/truncated data
        raise InputError(f"cannot decode image: {e}", code="invalid_image") from None


def _image_from_array(arr: np.ndarray) -> Image.Image:
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4) or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise InputError(f"numpy image must be HxW, HxWx1, HxWx3 or HxWx4, got shape {arr.shape}",
                         code="invalid_image")
    if arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.floating) and np.nanmax(arr) <= 1.0:
            arr = np.nan_to_num(arr) * 255.0
        arr = np.clip(np.nan_to_num(arr), 0, 255).astype(np.uint8)
    mode = {1: "L", 3: "RGB", 4: "RGBA"}[arr.shape[2]]
    return Image.fromarray(arr[..., 0] if mode == "L" else arr, mode)


# (x / 255 - mean) / std as one multiply-add per pixel
_PIXEL_SCALE = (1.0 / (255.0 * np.asarray(IMAGE_STD, np.float64))).astype(np.float32)
_PIXEL_BIAS = (-np.asarray(IMAGE_MEAN, np.float64) / np.asarray(IMAGE_STD, np.float64)).astype(np.float32)


def image_to_tensor(img: Image.Image, size: int = IMAGE_SIZE) -> np.ndarray:
    """RGB PIL image -> float32 CHW array, resized (squashed) to size x size and normalised."""
    resized = img.resize((size, size), Image.Resampling.BILINEAR)  # ~70 % of the time; Pillow frees the GIL
    x = np.asarray(resized, dtype=np.float32) * _PIXEL_SCALE + _PIXEL_BIAS
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def images_to_batch(images: Sequence[Image.Image], size: int = IMAGE_SIZE) -> np.ndarray:
    """N images -> float32 NCHW batch (``Guard`` converts a batch's images on its worker pool instead)."""
    return np.stack([image_to_tensor(im, size) for im in images])


def blank_image(size: int = IMAGE_SIZE) -> Image.Image:
    """The 'no image' input: a plain white image (used for text-only requests and unimodal views)."""
    return Image.new("RGB", (size, size), (255, 255, 255))


def check_text(text: object, max_chars: int = MAX_TEXT_CHARS) -> str:
    """Validate user text: must be str (bytes are decoded as strict UTF-8), at most ``max_chars``."""
    if isinstance(text, (bytes, bytearray)):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as e:
            raise InputError(f"text is not valid UTF-8: {e}", code="invalid_text") from None
    if text is None:
        return ""
    if not isinstance(text, str):
        raise InputError(f"text must be a string, got {type(text).__name__}", code="invalid_text")
    if len(text) > max_chars:
        raise InputError(f"text has {len(text)} characters; the limit is {max_chars}", code="text_too_long")
    return text.replace("\x00", " ")


class TextTokenizer:
    """WordPiece tokenizer of the text encoder (``tokenizer.json``); truncates at ``max_tokens``."""

    def __init__(self, tokenizer_json: str | os.PathLike, max_tokens: int = TEXT_MAX_TOKENS,
                 fixed_length: bool = False):
        from tokenizers import Tokenizer

        self.max_tokens = max_tokens
        self._tok = Tokenizer.from_file(str(tokenizer_json))
        self._tok.enable_truncation(max_length=max_tokens)
        pad_id = self._tok.token_to_id("[PAD]")
        # pad to the longest text of the batch (the graphs take a dynamic sequence axis), or always to
        # max_tokens (``fixed_length``: one sequence shape, as a GPU backend wants)
        self._tok.enable_padding(pad_id=0 if pad_id is None else pad_id, pad_token="[PAD]",
                                 length=max_tokens if fixed_length else None)

    def __call__(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Return (input_ids, attention_mask), int64 arrays of shape [len(texts), <= max_tokens]."""
        encodings = self._tok.encode_batch([t if t else "" for t in texts])
        ids = np.asarray([e.ids for e in encodings], dtype=np.int64)
        mask = np.asarray([e.attention_mask for e in encodings], dtype=np.int64)
        return ids, mask
