"""runtime/ocr.py: projection-based line finding and CTC decoding (fast, no models), and (slow) the
real PP-OCRv4 models on rendered text, a blank image and, when ../shared/data is present, FigStep images."""
from __future__ import annotations

import csv
import os

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from crossguard.runtime.ocr import FastOCR, _reading_order, _runs, _xy_cut, packaged_model_paths

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


@pytest.fixture(scope="module")
def engine():
    paths = packaged_model_paths()
    if paths is None:
        pytest.skip("PP-OCRv4 models (rapidocr_onnxruntime) are not installed")
    return FastOCR(*paths, threads=2)


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
def test_no_work_on_blank_and_no_text_on_a_gradient(engine):
    blank = engine(Image.new("RGB", (760, 760), (250, 250, 250)))
    assert blank.text == "" and set(blank.timings_ms) == {"ocr_check"}
    ramp = np.linspace(0, 255, 400, dtype=np.float32)
    gradient = Image.fromarray(np.stack([np.tile(ramp, (300, 1))] * 3, axis=-1).astype(np.uint8))
    result = engine(gradient)
    assert result.text == "" and "ocr_det" in result.timings_ms and "ocr_rec" not in result.timings_ms


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
