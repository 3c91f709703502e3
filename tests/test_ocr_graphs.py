"""export/ocr_graphs.py: exact folds of affine blocks / decomposed hard-swish, and the export-time check."""
from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from crossguard.export.ocr_graphs import (
    accuracy_failures,
    fold_affine,
    optimize_ocr_models,
)
from crossguard.export.validate import ExportValidationError
from onnx import TensorProto, helper, numpy_helper

C = 4


class _Graph:
    """A Paddle-exporter-like graph builder: weights and scalars as Constant nodes, opset 12."""

    def __init__(self, seed: int = 0):
        self.rng = np.random.default_rng(seed)
        self.nodes: list = []
        self.k = 0

    def const(self, array) -> str:
        self.k += 1
        name = f"c{self.k}"
        self.nodes.append(helper.make_node("Constant", [], [name], value=numpy_helper.from_array(
            np.asarray(array, np.float32), name + "_v")))
        return name

    def op(self, op_type: str, inputs: list[str], **attrs) -> str:
        self.k += 1
        out = f"t{self.k}"
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=f"n{self.k}", **attrs))
        return out

    def conv(self, x: str, kernel: int, group: int = 1) -> str:
        w = self.const(self.rng.standard_normal((C, C // group, kernel, kernel)) * 0.5)
        b = self.const(self.rng.standard_normal(C) * 0.1)
        return self.op("Conv", [x, w, b], kernel_shape=[kernel, kernel], pads=[kernel // 2] * 4, group=group)

    def affine(self, x: str, scalar_first: bool = True) -> str:
        a, b = self.const(self.rng.uniform(0.5, 1.5)), self.const(self.rng.uniform(-0.5, 0.5))
        return self.op("Add", [self.op("Mul", [a, x] if scalar_first else [x, a]), b])

    def hardswish(self, x: str, clip_max: float = 6.0) -> str:
        clip = self.op("Clip", [self.op("Add", [x, self.const(3.0)]), self.const(0.0), self.const(clip_max)])
        return self.op("Div", [self.op("Mul", [x, clip]), self.const(6.0)])

    def model(self, out: str):
        self.nodes.append(helper.make_node("Identity", [out], ["y"]))
        graph = helper.make_graph(self.nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, C, 8, 8])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 12)])
        model.ir_version = 8
        model.metadata_props.add(key="character", value="a\nb")
        return model


def _run(model, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def _ops(model) -> dict[str, int]:
    out: dict[str, int] = {}
    for n in model.graph.node:
        out[n.op_type] = out.get(n.op_type, 0) + 1
    return out


def test_fold_affine_is_exact_and_removes_the_elementwise_ops():
    g = _Graph()
    t = g.hardswish(g.affine(g.conv("x", 3)))                      # Conv -> affine -> hard-swish
    t = g.hardswish(g.affine(g.conv(g.affine(t), 3, group=C), scalar_first=False))  # affine -> padded dw Conv
    y = g.conv(g.affine(t), 1)                                     # affine -> 1x1 Conv (no padding)
    original = g.model(y)
    x = np.random.default_rng(1).standard_normal((1, C, 8, 8)).astype(np.float32) * 3
    expected = _run(original, x)

    folded, stats = fold_affine(onnx.load_from_string(original.SerializeToString()))
    assert stats == {"conv_post_affine": 2, "hardswish": 2, "conv_pre_affine": 1, "conv_pre_scale": 1}
    ops = _ops(folded)
    assert ops.get("HardSwish") == 2 and "Clip" not in ops and "Div" not in ops and "Mul" not in ops
    assert ops.get("Add") == 1  # the shift in front of the padded depthwise Conv
    assert [(p.key, p.value) for p in folded.metadata_props] == [("character", "a\nb")]
    np.testing.assert_allclose(_run(folded, x), expected, rtol=1e-4, atol=1e-4)


def test_fold_affine_leaves_other_patterns_alone():
    g = _Graph(2)
    t = g.hardswish(g.conv("x", 3), clip_max=5.0)    # not a hard-swish (clip at 5)
    t = g.op("Mul", [g.conv(t, 3), t])                 # Conv -> Mul by a tensor, not a scalar
    original = g.model(t)
    x = np.random.default_rng(3).standard_normal((1, C, 8, 8)).astype(np.float32)
    folded, stats = fold_affine(onnx.load_from_string(original.SerializeToString()))
    assert sum(stats.values()) == 0
    ops = _ops(folded)
    assert ops["Clip"] == 1 and ops["Div"] == 1 and ops["Mul"] == 2 and "HardSwish" not in ops
    np.testing.assert_allclose(_run(folded, x), _run(original, x), rtol=1e-5, atol=1e-5)


def test_optimize_ocr_models_rejects_a_bad_bound(tmp_path):
    with pytest.raises(ValueError, match="max_cer_increase"):
        optimize_ocr_models("det.onnx", "rec.onnx", tmp_path, max_cer_increase=1.5)


def test_accuracy_failures_per_class():
    comparison = {"classes": {
        "figstep_like": {"reference": {"cer": 0.001, "word_recall": 1.0}, "candidate": {"cer": 0.004, "word_recall": 0.996}},
        "typographic": {"reference": {"cer": 0.03, "word_recall": 0.87}, "candidate": {"cer": 0.04, "word_recall": 0.85}}}}
    assert accuracy_failures(comparison, 0.005, 0.005) == [
        "typographic: CER 0.0300 -> 0.0400 (bound +0.005)", "typographic: word recall 0.8700 -> 0.8500 (bound -0.005)"]
    assert accuracy_failures(comparison, 0.02, 0.03) == []


def _packaged():
    from crossguard.runtime.ocr import packaged_model_paths

    paths = packaged_model_paths()
    if paths is None:
        pytest.skip("rapidocr_onnxruntime (packaged PP-OCRv4) not installed")
    return paths


def _few_images(seed: int = 3):
    from crossguard.export.ocr_graphs import ocr_images

    return ocr_images(2, seed)


@pytest.mark.slow
def test_packaged_ocr_graphs_fold_and_read_the_same(tmp_path):
    det, rec = _packaged()
    paths, report = optimize_ocr_models(det, rec, tmp_path, samples=_few_images(), log=lambda s: None)
    assert report["det_fold"]["hardswish"] > 0 and report["rec_fold"]["conv_post_affine"] > 0
    check = report["validation"]
    assert check["images"] == 4 and set(check["classes"]) == {"figstep_like", "typographic"}
    assert check["cer_drift"] == 0.0  # exact rewrites: the same text
    assert paths == {"det": tmp_path / "ocr_det.folded.onnx", "rec": tmp_path / "ocr_rec.folded.onnx"}
    assert "character" in {p.key for p in onnx.load(str(paths["rec"])).metadata_props}


@pytest.mark.slow
def test_export_fails_when_the_folded_ocr_reads_worse(tmp_path, monkeypatch):
    """A broken rewrite (every folded weight zeroed) must stop the export, not reach the bundle."""
    from crossguard.export import ocr_graphs

    real = ocr_graphs.fold_affine

    def broken(model):
        model, stats = real(model)
        for init in model.graph.initializer:
            if init.name.endswith("_folded_W"):
                init.CopyFrom(numpy_helper.from_array(np.zeros_like(numpy_helper.to_array(init)), init.name))
        return model, stats

    monkeypatch.setattr(ocr_graphs, "fold_affine", broken)
    det, rec = _packaged()
    with pytest.raises(ExportValidationError, match="read worse"):
        optimize_ocr_models(det, rec, tmp_path, samples=_few_images(), log=lambda s: None)


def test_export_config_rejects_unknown_choices(tmp_path):
    from crossguard.export.pipeline import ExportConfig

    with pytest.raises(ValueError, match="ocr_graphs"):
        ExportConfig(out=tmp_path / "b", ocr_graphs="int4")
    with pytest.raises(ValueError, match="unknown precision"):
        ExportConfig(precisions=("fp32", "int4"))
    assert ExportConfig(precisions=("int8",)).precisions == ("fp32", "int8")


@pytest.mark.slow
def test_export_bundle_writes_the_folded_ocr_graphs(tmp_path, monkeypatch):
    import json

    from _export_tiny import HEAD_CONFIG, tiny_modules, tiny_tokenizer_file
    from crossguard.export import ocr_graphs
    from crossguard.export.pipeline import ExportConfig, export_modules
    from crossguard.export.samples import fixed_samples

    det, rec = _packaged()
    images = _few_images()
    monkeypatch.setattr(ocr_graphs, "ocr_images", lambda n, seed, *a: images)  # keep the test fast
    out = tmp_path / "bundle"
    report = export_modules(tiny_modules(), HEAD_CONFIG, tiny_tokenizer_file(tmp_path), {"det": det, "rec": rec},
                            fixed_samples(4), ExportConfig(out=out, precisions=("fp32",), ocr_graphs="folded"),
                            log=lambda s: None).details
    assert report["ocr_graphs"]["validation"]["images"] == 4
    for kind in ("det", "rec"):
        assert any(n.op_type == "HardSwish" for n in onnx.load(str(out / "ocr" / f"{kind}.onnx")).graph.node)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["export_report"]["ocr_graphs"]["rewrite"] == "fold_affine"
