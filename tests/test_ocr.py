"""runtime/ocr.py: projection-based line finding and CTC decoding (fast, no models), and (slow) the
real PP-OCRv4 models on rendered text, a blank image and, when ../shared/data is present, FigStep images."""
from __future__ import annotations

import csv
import os

import numpy as np
import pytest
from crossguard.runtime import ocr as ocr_module
from crossguard.runtime.ocr import (
    FastOCR, OCRSettings, _reading_order, _runs, _xy_cut, packaged_model_paths, smooth_share,
)
from PIL import Image, ImageDraw, ImageFont

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"


def test_runs_bridge_small_gaps():
    flags = np.array([0, 1, 1, 0, 1, 0, 0, 0, 1, 1], bool)
    assert _runs(flags, 0) == [(1, 3), (4, 5), (8, 10)]
    assert _runs(flags, 1) == [(1, 5), (8, 10)]
    assert _runs(np.zeros(5, bool), 3) == []


def test_xy_cut_finds_lines_and_columns():
    mask = np.zeros((60, 100), bool)
    mask[5:12, 10:40] = True  # line 1, word 1
    mask[5:12, 45:70] = True  # line 1, word 2 (gap 5 < 1.5 * height: same line)
    mask[30:37, 10:30] = True  # line 2
    mask[30:37, 80:95] = True  # far right: its own box
    boxes = sorted(_xy_cut(mask, 0, 0, word_gap=1.5))
    assert boxes == [(10, 5, 70, 12), (10, 30, 30, 37), (80, 30, 95, 37)]


def test_reading_order():
    boxes = [(50, 0, 90, 10), (0, 30, 40, 40), (0, 1, 40, 11)]
    assert _reading_order(boxes) == [(0, 1, 40, 11), (50, 0, 90, 10), (0, 30, 40, 40)]


def test_ctc_decode_collapses_repeats_and_blanks():
    fake = FastOCR.__new__(FastOCR)
    fake.charset = ["<blank>", "a", "b", " "]
    probs = np.eye(4, dtype=np.float32)[[1, 1, 0, 1, 2, 2, 3, 0]] * 0.9
    text, score = fake._ctc_decode(probs)
    assert text == "aab" and score == pytest.approx(0.9)  # trailing space stripped
    assert fake._ctc_decode(np.eye(4, dtype=np.float32)[[0, 0]]) == ("", 0.0)


class _FakeRec:
    """Stands in for the rec session: one CTC frame per 8 input columns; a frame whose columns are all
    bright (> 0.5 after normalisation) reads as class 1, a dark one as class 2, anything else blank."""

    def __init__(self):
        self.calls = []

    def run(self, _names, feeds):
        x = next(iter(feeds.values()))
        self.calls.append(x.shape)
        n, _, _, w = x.shape
        frames = x[:, 0].mean(axis=1).reshape(n, w // 8, 8)
        probs = np.full((n, w // 8, 4), 0.01, np.float32)
        probs[..., 0] = 0.97
        bright, dark = (frames > 0.5).all(axis=2), (frames < -0.5).all(axis=2)
        for cls, where in ((1, bright), (2, dark)):
            probs[..., 0][where] = 0.01
            probs[..., cls][where] = 0.97
        return [probs]


def _fake_engine():
    fake = FastOCR.__new__(FastOCR)
    fake.charset = ["<blank>", "a", "b", " "]
    fake.rec, fake._rec_in = _FakeRec(), "x"
    fake.settings = OCRSettings()
    return fake


def test_strip_recognition_splits_frames_back_per_crop(monkeypatch):
    """Crops of different widths and colours on a grey image: each crop's text comes from its own
    frames, in box order, whether the crops share one strip or are split over batch rows."""
    img = np.full((100, 2000, 3), 128, np.uint8)
    boxes = [(0, 0, 40, 32), (100, 0, 400, 32), (500, 0, 520, 32), (600, 0, 1900, 32)]
    img[:32, 0:40] = 255      # "a": bright
    img[:32, 100:400] = 0     # "b": dark
    img[:32, 500:520] = 255   # narrow bright
    img[:32, 600:1900] = 0    # long dark
    pil = Image.fromarray(img)
    for max_strip, rows in ((100_000, 1), (1000, 2)):
        monkeypatch.setattr(ocr_module, "MAX_STRIP", max_strip)
        fake = _fake_engine()
        texts = [t for t, _ in fake.recognize(pil, boxes)]
        assert texts == ["a", "b", "a", "b"]
        assert len(fake.rec.calls) == 1 and fake.rec.calls[0][0] == rows
    assert _fake_engine().recognize(pil, []) == []


def test_smooth_share_separates_plain_backgrounds_from_textures():
    rng = np.random.default_rng(0)
    plain = np.full((96, 160, 3), 240, np.uint8)
    plain[40:50, 20:140] = 0  # a line of "text" leaves most of the background smooth
    ramp = np.broadcast_to(np.linspace(30, 220, 160, dtype=np.float32)[None, :, None], (96, 160, 3))
    noise = rng.integers(0, 256, (96, 160, 3), dtype=np.uint8)
    assert smooth_share(plain) > 0.8
    assert smooth_share(ramp.astype(np.uint8)) > 0.9  # ~1.2 levels per pixel
    assert smooth_share(noise) < 0.01


def test_check_side_is_validated():
    with pytest.raises(ValueError, match="check_side"):
        OCRSettings(check_side=16)
    with pytest.raises(ValueError, match="check_side"):
        OCRSettings(det_side=256, check_side=320)
    assert OCRSettings(check_side=0).check_side == 0  # off


@pytest.fixture(scope="module")
def engine():
    paths = packaged_model_paths()
    if paths is None:
        pytest.skip("PP-OCRv4 models (rapidocr_onnxruntime) are not installed")
    return FastOCR(*paths, threads=2)


@pytest.fixture(scope="module")
def unchecked_engine():
    """The pipeline without the presence check: every non-flat image goes to full detection."""
    paths = packaged_model_paths()
    if paths is None:
        pytest.skip("PP-OCRv4 models (rapidocr_onnxruntime) are not installed")
    return FastOCR(*paths, threads=2, settings=OCRSettings(check_side=0))


def render(lines: list[str], size=(760, 400), font_size=48) -> Image.Image:
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.truetype(FONT, font_size)
    for i, line in enumerate(lines):
        draw.text((20, 20 + i * int(font_size * 1.4)), line, font=font, fill="black")
    return img


@pytest.mark.slow
def test_reads_rendered_lines_in_order(engine):
    if not os.path.exists(FONT):
        pytest.skip("DejaVu font missing")
    result = engine(render(["Steps to bake", "a chocolate cake.", "1.", "2."]))
    assert result.text.split("\n")[:2] == ["Steps to bake", "a chocolate cake."]
    assert all(line.score >= 0.5 for line in result.lines)
    assert {"ocr_det", "ocr_rec"} <= set(result.timings_ms)


@pytest.mark.slow
def test_no_work_on_blank_and_no_text_on_a_gradient(engine, unchecked_engine):
    engine.warmup()  # runs each session once (Guard.warmup calls it)
    blank = engine(Image.new("RGB", (760, 760), (250, 250, 250)))
    assert blank.text == "" and set(blank.timings_ms) == {"ocr_check"}
    ramp = np.linspace(0, 255, 400, dtype=np.float32)
    gradient = Image.fromarray(np.stack([np.tile(ramp, (300, 1))] * 3, axis=-1).astype(np.uint8))
    for eng in (engine, unchecked_engine):  # document-like (smooth): the full detector runs and finds nothing
        result = eng(gradient)
        assert result.text == "" and "ocr_det" in result.timings_ms and "ocr_rec" not in result.timings_ms


@pytest.mark.slow
def test_presence_check_no_text_on_photos_and_textures_text_on_rendered_text(engine):
    from crossguard.benchmarks.latency import photo_like_image
    from crossguard.benchmarks.ocr_speed import texture

    if not os.path.exists(FONT):
        pytest.skip("DejaVu font missing")
    assert set(engine(Image.new("RGB", (640, 480), (30, 90, 200))).timings_ms) == {"ocr_check"}  # flat
    for img in [photo_like_image(seed, 512) for seed in range(3)] + [texture(seed, 448) for seed in range(4)]:
        assert not engine.presence(img)
        assert set(engine(img).timings_ms) == {"ocr_check"}
    # text whose font is >= 6 % of the longest side, dark on light and light on dark
    for size, font_size, colours in (((760, 400), 48, ("white", "black")), ((512, 512), 32, ("navy", "yellow"))):
        img = Image.new("RGB", size, colours[0])
        ImageDraw.Draw(img).text((20, 40), "Steps to bake a cake.", font=ImageFont.truetype(FONT, font_size),
                                 fill=colours[1])
        assert engine.presence(img)


@pytest.mark.slow
def test_small_text_on_a_plain_background_still_reaches_the_detector(engine):
    """Font 3.4 % of the side: too small for the detector at check_side, but the background is plain, so
    the presence check sends it to full detection."""
    if not os.path.exists(FONT):
        pytest.skip("DejaVu font missing")
    img = render(["How to grow tomatoes in a garden."], size=(760, 760), font_size=26)
    s = engine.settings
    assert not (engine.prob_map(engine.det_input(img, s.check_side), engine.check) > s.det_thresh).any()
    assert engine.presence(img)
    assert "tomatoes" in engine(img).text


@pytest.mark.slow
def test_presence_check_changes_no_reading_of_text(engine, unchecked_engine):
    if not os.path.exists(FONT):
        pytest.skip("DejaVu font missing")
    img = render(["How to grow tomatoes", "in a small garden.", "1.", "2.", "3."])
    checked, unchecked = engine(img), unchecked_engine(img)
    assert checked.text == unchecked.text
    assert checked.text.split("\n")[:2] == ["How to grow tomatoes", "in a small garden."]
    assert [line.box for line in checked.lines] == [line.box for line in unchecked.lines]


@pytest.mark.slow
@pytest.mark.shared
def test_figstep_accuracy(engine, shared_data):
    folder = shared_data / "dev" / "figstep_tiny"
    rows = list(csv.DictReader(open(folder / "SafeBench-Tiny.csv", encoding="utf-8")))[:10]
    recalls = []
    for r in rows:
        img = Image.open(folder / "images" / f"query_{r['dataset']}_{r['category_id']}_{r['task_id']}_6.png")
        words = set(engine(img.convert("RGB")).text.lower().split())
        truth = r["instruction"].lower().split()
        recalls.append(sum(w in words for w in truth) / len(truth))
    assert np.mean(recalls) >= 0.95, recalls


def test_missing_charset_metadata_is_refused(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "m.onnx"))
    with pytest.raises(ValueError, match="character"):
        FastOCR(tmp_path / "m.onnx", tmp_path / "m.onnx")
