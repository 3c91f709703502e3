"""The Guard on a tiny bundle: verdict fields, policy, batch == single, backend fallback, bad inputs,
the micro-batcher, and (slow) OCR through the real PP-OCRv4 models."""
from __future__ import annotations

import io
import logging
import math
import threading
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from _runtime_tiny import make_tiny_bundle, packaged_ocr
from crossguard.runtime import preprocess
from crossguard.runtime.backends import open_graphs
from crossguard.runtime.batching import MicroBatcher
from crossguard.runtime.bundle import Bundle, BundleError
from crossguard.runtime.guard import Guard, auto_workers, pad_rows, shape_bucket
from crossguard.runtime.preprocess import InputError
from crossguard.taxonomy import DOMAIN_NAMES

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory):
    return make_tiny_bundle(tmp_path_factory.mktemp("g") / "tiny", precisions=("fp32", "int8"))


@pytest.fixture(scope="module")
def guard(bundle_dir):
    return Guard.load(bundle_dir, device="cpu", ocr="off")


def png_bytes(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=kw.pop("format", "PNG"), **kw)
    return buf.getvalue()


def photo(seed: int = 0, size=(96, 64)) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (*size[::-1], 3), dtype=np.uint8))


def test_verdict_fields(guard):
    v = guard.screen(photo(), "how to make a bomb")
    assert v.unsafe and v.label == "unsafe" and 0.5 <= v.score <= 1.0
    assert v.domain == "drugs_weapons" and set(v.domain_scores) == set(DOMAIN_NAMES)
    assert math.isclose(sum(v.domain_scores.values()), 1.0, abs_tol=1e-6)
    assert v.modality == "text" and set(v.modality_scores) == {"none", "text", "image", "joint"}
    assert v.backend == "ort-cpu-int8"  # auto precision picks int8 on CPU when the bundle has it
    assert v.ocr_text == "" and v.threshold == 0.5 and v.latency_ms > 0
    assert {"decode", "ocr", "text_encoder", "image_encoder", "fusion", "policy"} <= set(v.timings_ms)
    safe = guard.screen(None, "a sunny day")
    assert not safe.unsafe and safe.score < 0.5 and safe.modality == "none"
    assert not guard.screen(None, "").unsafe  # empty text, no image: allowed and safe
    assert guard.info()["bundle_name"] == "tiny-test-bundle"


def test_policy_and_threshold(bundle_dir):
    strict = Guard.load(bundle_dir, device="cpu", ocr="off", threshold=0.01, warmup=False)
    assert strict.screen(None, "a sunny day").unsafe  # score ~0.05 >= 0.01
    lenient = Guard.load(bundle_dir, device="cpu", ocr="off", warmup=False, threshold=0.5)
    lenient.policy["disabled_domains"] = ["drugs_weapons"]
    v = lenient.screen(None, "how to make a bomb")
    assert not v.unsafe and v.domain == "drugs_weapons" and v.score > 0.5
    lenient.policy["disabled_domains"] = []
    lenient.policy["domain_thresholds"] = {"drugs_weapons": 0.999}
    v = lenient.screen(None, "how to make a bomb")
    assert not v.unsafe and v.threshold == 0.999


def test_temperature_calibration(tmp_path):
    hot = Guard.load(make_tiny_bundle(tmp_path / "t", temperature=4.0), device="cpu", ocr="off", warmup=False)
    v = hot.screen(None, "how to make a bomb")
    logit = math.log(v.score / (1 - v.score)) * 4.0
    cold = Guard.load(make_tiny_bundle(tmp_path / "c"), device="cpu", ocr="off", warmup=False)
    assert math.isclose(cold.screen(None, "how to make a bomb").score, 1 / (1 + math.exp(-logit)), rel_tol=1e-5)


def test_batch_equals_single(guard):
    images = [photo(1), None, photo(2, (300, 40)), png_bytes(photo(3))]
    texts = ["how to make a bomb", "a sunny day with a long tail of words to pad the batch", "", "poison"]
    batch = guard.screen_batch(images, texts)
    assert len(batch) == len(images)
    for img, text, b in zip(images, texts, batch, strict=True):
        s = guard.screen(img, text)
        assert s.unsafe == b.unsafe and s.domain == b.domain and s.modality == b.modality
        assert math.isclose(s.score, b.score, abs_tol=1e-5)
    assert guard.screen_batch([], []) == []
    with pytest.raises(InputError, match="2 images but 1 texts"):
        guard.screen_batch([None, None], ["x"])


def test_backend_fallback_cuda_to_cpu(bundle_dir, caplog):
    caplog.set_level(logging.WARNING)
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this machine has CUDA")
    g = Guard.load(bundle_dir, device="cuda", precision="fp32", ocr="off", warmup=False)
    assert g.backend == "ort-cpu-fp32"
    assert any("CUDAExecutionProvider" in r for r in g.graphs.fallbacks)
    assert "falling back" in caplog.text
    gs = open_graphs(Bundle.load(bundle_dir), device="tensorrt", precision="fp32")
    assert gs.backend == "ort-cpu-fp32" and len(gs.fallbacks) == 3  # native TRT, TRT EP, CUDA EP
    with pytest.raises(BundleError, match="no fp16 graphs"):
        Guard.load(bundle_dir, device="cpu", precision="fp16", ocr="off")
    with pytest.raises(ValueError, match="device must be one of"):
        Guard.load(bundle_dir, device="gpu0", ocr="off")
    for bad in (-1, 2.5, "4"):
        with pytest.raises(ValueError, match="workers must be an integer"):
            Guard.load(bundle_dir, device="cpu", ocr="off", workers=bad)


def _bad_images(tmp_path):
    good = png_bytes(photo())
    bomb = Image.new("1", (1, 1))
    bomb_png = io.BytesIO()
    bomb.save(bomb_png, format="PNG")
    raw = bytearray(bomb_png.getvalue())
    raw[16:24] = (70000).to_bytes(4, "big") * 2  # IHDR width/height: 70000 x 70000, CRC now wrong
    return {
        "corrupt": b"\x89PNG\r\n\x1a\n" + b"garbage" * 20,
        "truncated": good[: len(good) // 2],
        "zero-size": b"",
        "not-an-image": b"hello world, not an image",
        "decompression bomb": bytes(raw),
        "missing file": str(tmp_path / "missing.png"),
        "wrong type": 12345,
        "wrong array shape": np.zeros((4, 4, 5), np.uint8),
        "empty array": np.zeros((0, 4, 3), np.uint8),
    }


def test_bad_inputs_raise_input_error(guard, tmp_path):
    for name, bad in _bad_images(tmp_path).items():
        with pytest.raises(InputError):
            guard.screen(bad, "hello")
        print("refused:", name)
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        guard.screen(str(tmp_path / "empty.png"), "x")
    big = Image.new("L", (7000, 7000))
    with pytest.raises(InputError, match="limit"):
        guard.screen(big, "x")  # 49 M pixels > 40 M limit
    with pytest.raises(InputError, match="UTF-8"):
        guard.screen(None, b"\xff\xfe invalid")
    with pytest.raises(InputError, match="characters"):
        guard.screen(None, "a" * (preprocess.MAX_TEXT_CHARS + 1))
    with pytest.raises(InputError, match="must be a string"):
        guard.screen(None, 3.5)


def test_odd_but_valid_images_are_screened(guard):
    frames = [Image.new("P", (32, 32), i) for i in range(3)]
    gif = io.BytesIO()
    frames[0].save(gif, format="GIF", save_all=True, append_images=frames[1:], duration=50)
    cmyk = png_bytes(Image.new("CMYK", (40, 30), (0, 255, 0, 0)), format="JPEG")
    deep = Image.fromarray((np.arange(64 * 64, dtype=np.uint16) * 16).reshape(64, 64))
    assert deep.mode.startswith("I;16")
    rgba = Image.new("RGBA", (50, 50), (255, 0, 0, 128))
    for img in (gif.getvalue(), cmyk, png_bytes(deep), png_bytes(rgba), rgba, np.zeros((20, 30), np.uint8),
                np.ones((8, 8, 4), np.float32), None):
        v = guard.screen(img, b"how to make a bomb")  # bytes text: strict UTF-8
        assert v.unsafe


def test_micro_batcher_concurrent(guard):
    calls = []
    original = guard.screen_prepared

    def spy(items):
        calls.append(len(items))
        return original(items)

    guard.screen_prepared = spy
    try:
        with MicroBatcher(guard, max_batch=8, max_wait_ms=30) as batcher:
            texts = ["how to make a bomb" if i % 3 == 0 else "a sunny day" for i in range(24)]
            results: dict[int, object] = {}
            barrier = threading.Barrier(24)

            def worker(i):
                barrier.wait()
                try:
                    results[i] = batcher.submit(None if i % 2 else photo(i), texts[i]).result(timeout=60)
                except Exception as e:  # noqa: BLE001
                    results[i] = e

            threads = [threading.Thread(target=worker, args=(i,)) for i in range(24)]
            [t.start() for t in threads]
            [t.join(60) for t in threads]
            assert all(results[i].unsafe == (i % 3 == 0) for i in range(24))
            assert max(calls) > 1 and max(calls) <= 8  # grouped, never above max_batch
            with pytest.raises(InputError):
                batcher.submit(b"corrupt", "x")  # a bad input fails only its own request
            assert not batcher.submit(None, "a sunny day").result(timeout=30).unsafe
        with pytest.raises(RuntimeError, match="closed"):
            batcher.submit(None, "x")
    finally:
        guard.screen_prepared = original


def test_image_encoder_runs_beside_the_ocr(bundle_dir):
    """With OCR on, the image encoder runs in the guard's worker thread while the OCR runs in the caller's
    (it needs no OCR result); verdicts equal those of a guard without the overlap."""
    import threading

    class RecordingOCR:
        def __init__(self):
            self.image_threads = []

        def __call__(self, image):
            from crossguard.runtime.ocr import OCRResult

            return OCRResult()

    g = Guard.load(bundle_dir, device="cpu", ocr="off")
    sequential = g.screen_batch([photo(1), photo(2)], ["hello", "how do I do this"])
    g = Guard(g.bundle, g.graphs, g.tokenizer, RecordingOCR())
    assert Guard(g.bundle, g.graphs, g.tokenizer, RecordingOCR(), overlap=False)._image_worker is None
    encoder = g.graphs["image_encoder"]
    run = encoder.run
    encoder.run = lambda feeds: (g.ocr.image_threads.append(threading.current_thread().name), run(feeds))[1]
    try:
        overlapped = g.screen_batch([photo(1), photo(2)], ["hello", "how do I do this"])
    finally:
        encoder.run = run
    assert g.ocr.image_threads and g.ocr.image_threads[0].startswith("crossguard-image")
    assert [v.score for v in overlapped] == pytest.approx([v.score for v in sequential], abs=1e-6)
    assert [v.unsafe for v in overlapped] == [v.unsafe for v in sequential]
    assert all("image_encoder" in v.timings_ms and "ocr" in v.timings_ms for v in overlapped)


def test_micro_batcher_isolates_errors_without_prepare():
    class Plain:  # a guard without prepare(): errors surface when the batch runs
        def screen_batch(self, images, texts):
            if any(t == "boom" for t in texts):
                raise InputError("bad request")
            return [t.upper() for t in texts]

    with MicroBatcher(Plain(), max_batch=4, max_wait_ms=50) as b:
        futures = [b.submit(None, t) for t in ("a", "boom", "c")]
        assert futures[0].result(5) == "A" and futures[2].result(5) == "C"
        with pytest.raises(InputError):
            futures[1].result(5)


def render_text(text: str, size=(640, 160)) -> Image.Image:
    img = Image.new("RGB", size, "white")
    ImageDraw.Draw(img).text((20, 40), text, font=ImageFont.truetype(FONT, 56), fill="black")
    return img


@pytest.mark.slow
def test_ocr_finds_rendered_text(tmp_path):
    if packaged_ocr() is None or not __import__("os").path.exists(FONT):
        pytest.skip("PP-OCRv4 models (rapidocr_onnxruntime) or the DejaVu font are missing")
    g = Guard.load(make_tiny_bundle(tmp_path / "ocr", with_ocr=True), device="cpu", ocr="on")
    v = g.screen(render_text("make a BOMB"), "what is in this image")
    assert "bomb" in v.ocr_text.lower() and v.unsafe  # unsafe only through the OCR text
    assert v.modality_scores["joint"] > 0.0
    blank = g.screen(None, "what is in this image")
    assert blank.ocr_text == "" and not blank.unsafe
    assert g.ocr(Image.new("RGB", (760, 760), "white")).timings_ms.keys() == {"ocr_check"}  # no det/rec work


def test_weights_mb_counts_the_graph_files_of_the_loaded_precision(bundle_dir):
    from crossguard.benchmarks.latency import weights_mb

    g = Guard.load(bundle_dir, device="cpu", precision="int8", ocr="off")
    files = [bundle_dir / "graphs" / f"{n}.int8.onnx" for n in ("image_encoder", "text_encoder", "fusion")]
    assert weights_mb(g) == pytest.approx(sum(f.stat().st_size for f in files) / 2**20)
    assert weights_mb(object()) is None


def test_batch_workers_resize_and_read_side_by_side_with_the_same_verdicts(bundle_dir):
    bundle = Bundle.load(bundle_dir)
    graphs = open_graphs(bundle, device="cpu", precision="fp32", threads=1)
    tokenizer = preprocess.TextTokenizer(bundle.tokenizer_path, max_tokens=bundle.max_tokens)
    readers = set()

    def fake_ocr(img):  # deterministic "reading": words on mostly red images only
        readers.add(threading.current_thread().name)
        r, g, _ = np.asarray(img.convert("RGB").resize((8, 8))).reshape(-1, 3).mean(0)
        return SimpleNamespace(text="make a  bomb\n" if r > 150 and g < 100 else "")

    colours = [(220, 30, 30), (30, 200, 60), (240, 240, 240)]
    images = [Image.new("RGB", (64 + 16 * i, 48 + 8 * i), colours[i % 3]) for i in range(7)]
    texts = [f"what is in picture {i}" for i in range(7)]
    serial = Guard(bundle, graphs, tokenizer, fake_ocr, workers=1).screen_batch(images, texts)
    assert readers == {threading.current_thread().name}
    pooled_guard = Guard(bundle, graphs, tokenizer, fake_ocr, workers=3)
    pooled = pooled_guard.screen_batch(images, texts)
    assert any(name.startswith("crossguard-batch") for name in readers) and pooled_guard.info()["workers"] == 3
    assert [v.ocr_text for v in pooled] == [v.ocr_text for v in serial] == ["make a bomb", "", ""] * 2 + ["make a bomb"]
    assert np.allclose([v.score for v in pooled], [v.score for v in serial], atol=1e-6)
    assert [(v.unsafe, v.domain, v.modality) for v in pooled] == [(v.unsafe, v.domain, v.modality) for v in serial]
    single = pooled_guard.screen(images[0], texts[0])  # batch 1 skips the pool
    assert single.score == pytest.approx(serial[0].score, abs=1e-6)


def test_auto_workers_pool_only_on_a_gpu(monkeypatch, bundle_dir):
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(16)), raising=False)
    assert auto_workers("cuda") == 8 and auto_workers("cpu") == 1
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert auto_workers("cuda") == 2
    assert Guard.load(bundle_dir, device="cpu", ocr="off", warmup=False).info()["workers"] == 1
    assert Guard.load(bundle_dir, device="cpu", ocr="off", warmup=False, workers=3).info()["workers"] == 3


def test_fixed_shapes_pad_batches_to_buckets_with_the_same_verdicts(bundle_dir):
    """What a GPU backend gets (forced here on the CPU): batches padded to a power of two, texts to max_tokens;
    the verdicts equal the unpadded ones."""
    assert [shape_bucket(n) for n in (1, 2, 3, 5, 8, 9, 17)] == [1, 2, 4, 8, 8, 16, 32]
    a = np.arange(6).reshape(3, 2)
    assert pad_rows(a, 5).tolist() == [[0, 1], [2, 3], [4, 5], [0, 1], [0, 1]] and pad_rows(a, 3) is a
    bundle = Bundle.load(bundle_dir)
    graphs = open_graphs(bundle, device="cpu", precision="fp32", threads=1)
    plain = Guard(bundle, graphs, preprocess.TextTokenizer(bundle.tokenizer_path, max_tokens=bundle.max_tokens), None)
    fixed = Guard(bundle, graphs, preprocess.TextTokenizer(bundle.tokenizer_path, max_tokens=bundle.max_tokens,
                                                           fixed_length=True), None)
    fixed.fixed_shapes = True
    seen = []
    for name, session in graphs.sessions.items():
        run = session.run
        session.run = lambda feeds, run=run, name=name: (seen.append((name, {k: v.shape for k, v in feeds.items()})),
                                                          run(feeds))[1]
    images = [Image.new("RGB", (40 + 9 * i, 30), (30 * i, 90, 200 - 20 * i)) for i in range(5)]
    texts = ["how do I bake bread", "", "tell me about this picture please", "a bomb", "x " * 80]
    expected = plain.screen_batch(images, texts)
    seen.clear()
    got = fixed.screen_batch(images, texts)
    assert {shapes[next(iter(shapes))][0] for _, shapes in seen} == {8}
    assert {shapes["input_ids"][1] for name, shapes in seen if name == "text_encoder"} == {bundle.max_tokens}
    assert np.allclose([v.score for v in got], [v.score for v in expected], atol=1e-5)
    assert [(v.unsafe, v.domain, v.modality) for v in got] == [(v.unsafe, v.domain, v.modality) for v in expected]
    seen.clear()
    fixed.warmup(max_batch=5)  # warms batch 1, 2, 4 and 8
    assert sorted({shapes["pixel_values"][0] for name, shapes in seen if name == "image_encoder"}) == [1, 2, 4, 8]


def test_ocr_stays_on_the_cpu_beside_gpu_graphs_unless_asked(tmp_path, monkeypatch):
    """The OCR's shapes follow every image, so on a GPU it runs on the CPU by default; ocr_device="cuda" moves it."""
    if packaged_ocr() is None:
        pytest.skip("PP-OCRv4 models (rapidocr_onnxruntime) are missing")
    import crossguard.runtime.guard as guard_mod
    import crossguard.runtime.ocr as ocr_mod

    def gpu_labelled(*args, **kwargs):  # CPU sessions, reported as a GPU backend
        graphs = open_graphs(*args, **kwargs)
        graphs.device = "cuda"
        return graphs

    chosen = []

    class RecordingOCR:
        def __init__(self, det, rec, threads=2, providers=None):
            chosen.append(providers)

        def __call__(self, image):
            return SimpleNamespace(text="")

        def warmup(self):
            pass

    monkeypatch.setattr(guard_mod, "open_graphs", gpu_labelled)
    monkeypatch.setattr(ocr_mod, "FastOCR", RecordingOCR)
    bundle = make_tiny_bundle(tmp_path / "ocr", with_ocr=True)
    default = Guard.load(bundle, device="cpu", ocr="on", warmup=False)
    moved = Guard.load(bundle, device="cpu", ocr="on", warmup=False, ocr_device="cuda")
    assert chosen[0] is None and chosen[1][0][0] == "CUDAExecutionProvider"
    assert default.fixed_shapes and moved.fixed_shapes
    with pytest.raises(ValueError, match="ocr_device must be one of"):
        Guard.load(bundle, device="cpu", ocr="on", warmup=False, ocr_device="gpu")


def test_fixed_shapes_check_script_on_a_tiny_bundle(bundle_dir, tmp_path, capsys):
    from crossguard.benchmarks.fixed_shapes_check import main

    rows = []
    for i in range(5):
        Image.new("RGB", (30 + 11 * i, 40), (40 * i, 100, 20)).save(tmp_path / f"{i}.png")
        rows.append({"image": f"{i}.png" if i != 2 else None, "text": "a bomb" if i % 2 else "what is this"})
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(__import__("json").dumps(r) + "\n" for r in rows))
    assert main([str(manifest), "--bundle", str(bundle_dir), "--batch", "3"]) == 0
    assert "agree on 5/5" in capsys.readouterr().out
