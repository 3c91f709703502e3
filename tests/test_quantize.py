"""FP16 conversion, static QDQ / dynamic INT8 of tiny graphs, the INT8 keep/reject rule, distillation."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from _export_tiny import tiny_modules

from crossguard.export.onnx_export import export_graph
from crossguard.export.quantize import (
    batch_feeds, choose_int8, quantize_dynamic_matmul, quantize_qdq, to_fp16,
)
from crossguard.export.settings import FUSION, IMAGE_ENCODER, TEXT_ENCODER
from crossguard.export.validate import onnx_runner, onnx_session, validate, verdict_agreement


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("graphs")
    modules = tiny_modules()
    paths = {}
    for setting in (IMAGE_ENCODER, TEXT_ENCODER, FUSION):
        paths[setting.name] = export_graph(setting, modules[setting.name], folder / f"{setting.name}.onnx") and \
            folder / f"{setting.name}.onnx"
    return modules, paths, folder


def _calibration(setting, n=6):
    return [setting.random_inputs(batch=4, seq=7, seed=100 + i) for i in range(n)]


def test_fp16_keeps_float32_io_and_meets_tolerance(exported):
    modules, paths, folder = exported
    out = to_fp16(paths["fusion"], folder / "fusion.fp16.onnx")
    model = onnx.load(str(out))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer)
    report = validate(FUSION, modules["fusion"], out, _calibration(FUSION, 2), precision="fp16")
    assert all(v > 0 for v in report["max_abs_diff"].values())  # really reduced precision


def test_static_qdq_fusion_is_valid_and_agrees(exported):
    modules, paths, folder = exported
    calib = _calibration(FUSION)
    out = quantize_qdq(paths["fusion"], folder / "fusion.int8.onnx", FUSION, calib)
    model = onnx.load(str(out))
    onnx.checker.check_model(model)
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    feeds = FUSION.random_inputs(batch=32, seq=9, seed=7)
    ref = onnx_runner({"fusion": onnx_session(paths["fusion"])})("fusion", feeds)
    got = onnx_runner({"fusion": onnx_session(out)})("fusion", feeds)
    threshold = float(np.median(1 / (1 + np.exp(-ref["unsafe_logit"]))))
    assert verdict_agreement(ref, got, threshold=threshold) >= 0.8
    corr = np.corrcoef(ref["domain_logits"].ravel(), got["domain_logits"].ravel())[0, 1]
    assert corr > 0.98


def test_qdq_without_depthwise_leaves_depthwise_conv_float(exported):
    _, paths, folder = exported
    out = quantize_qdq(paths["image_encoder"], folder / "image.int8.onnx", IMAGE_ENCODER,
                       _calibration(IMAGE_ENCODER, 2), exclude_depthwise=True)
    model = onnx.load(str(out))
    producers = {o: n for n in model.graph.node for o in n.output}
    for node in model.graph.node:
        if node.op_type == "Conv" and any(a.name == "group" and a.i > 1 for a in node.attribute):
            assert producers[node.input[1]].op_type != "DequantizeLinear" if node.input[1] in producers else True
    assert any(n.op_type == "QuantizeLinear" for n in model.graph.node)


def test_dynamic_matmul_text_encoder(exported):
    modules, paths, folder = exported
    out = quantize_dynamic_matmul(paths["text_encoder"], folder / "text.int8.onnx")
    ops = {n.op_type for n in onnx.load(str(out)).graph.node}
    assert "MatMulInteger" in ops or "DynamicQuantizeMatMul" in ops
    feeds = TEXT_ENCODER.random_inputs(batch=3, seq=9, seed=3)
    ref = onnx_runner({"text_encoder": onnx_session(paths["text_encoder"])})("text_encoder", feeds)
    got = onnx_runner({"text_encoder": onnx_session(out)})("text_encoder", feeds)
    cos = np.sum(ref["sentence_embedding"] * got["sentence_embedding"], axis=1)
    assert cos.min() > 0.99


def test_choose_int8_rejects_disagreeing_and_keeps_agreeing(exported, tmp_path):
    _, paths, _ = exported
    calib = _calibration(FUSION, 3)
    rejected = choose_int8(FUSION, paths["fusion"], tmp_path / "a.onnx", calib, lambda p: 0.0, repeats=3)
    assert not rejected.kept and not (tmp_path / "a.onnx").exists()
    assert all(c.get("agrees") is False for c in rejected.candidates.values() if "error" not in c)
    assert list(tmp_path.iterdir()) == []
    accepted = choose_int8(FUSION, paths["fusion"], tmp_path / "b.onnx", calib, lambda p: 1.0, repeats=3)
    assert set(accepted.fp32_ms) == {"b1", "b16"}
    assert accepted.kept == (tmp_path / "b.onnx").exists()  # kept only if measured faster than fp32
    if accepted.kept:
        best = accepted.candidates[accepted.method]
        assert best["faster"] and all(best["fp32_ms"][k] / best["ms"][k] >= 1.05 for k in best["ms"])


def test_batch_feeds_pads_sequences():
    a = TEXT_ENCODER.random_inputs(batch=2, seq=5, seed=1)
    b = TEXT_ENCODER.random_inputs(batch=1, seq=9, seed=2)
    out = batch_feeds([a, b], 4)
    assert out["input_ids"].shape == (4, 9) and out["attention_mask"][:2, 5:].sum() == 0


def test_distillation_tracks_the_teacher(tmp_path):
    """A student distilled from teacher logits agrees with the teacher more than one trained on labels."""
    from crossguard.export.distill import DistillConfig, agreement, distill_head, load_teacher_outputs
    from crossguard.train.guard.features import Features
    from crossguard.train.guard.model import FusionConfig
    from crossguard.train.guard.train import Labels, predict

    rng = np.random.default_rng(0)
    n, di, dt = 64, 32, 16  # small feature sizes: the head's dims come from its config
    feats = Features(image_tokens=rng.standard_normal((n, 49, di)).astype(np.float16),
                     image_embedding=rng.standard_normal((n, di)).astype(np.float32),
                     text_tokens=rng.standard_normal((n, 8, dt)).astype(np.float16),
                     text_mask=np.ones((n, 8), np.int64), text_embedding=rng.standard_normal((n, dt)).astype(np.float32),
                     ocr_embedding=np.zeros((n, dt), np.float32), ocr_present=np.zeros((n, 1), np.float32),
                     ids=[f"s{i}" for i in range(n)], ocr_text=[""] * n)
    direction = rng.standard_normal(dt).astype(np.float32)
    teacher_logit = (feats.text_embedding @ direction) / 4
    hard = (rng.random(n) < 0.5).astype(np.float32)  # labels unrelated to the teacher
    labels = Labels(unsafe=hard, domain=np.full(n, -1, np.int64), modality=np.zeros(n, np.int64),
                    kind=["benign"] * n)
    teacher_file = tmp_path / "teacher.jsonl"
    teacher_file.write_text("".join(f'{{"id": "s{i}", "unsafe_logit": {float(v)}}}\n'
                                    for i, v in enumerate(teacher_logit)))
    teacher = load_teacher_outputs(teacher_file, feats.ids)
    small = FusionConfig(image_dim=di, text_dim=dt, d_model=16, num_heads=2, hidden=16, dropout=0.0)
    cfg = DistillConfig(epochs=8, alpha=0.9, temperature=1.0, patience=8, batch_size=16)
    tr, va = np.arange(48), np.arange(48, n)
    sub = lambda lab, i: Labels(lab.unsafe[i], lab.domain[i], lab.modality[i], [lab.kind[j] for j in i])  # noqa
    t_tr = {k: v[tr] for k, v in teacher.items()}
    t_va = {k: v[va] for k, v in teacher.items()}
    student, history = distill_head(feats.subset(tr), sub(labels, tr), feats.subset(va), sub(labels, va),
                                    t_tr, t_va, cfg, small)
    plain, _ = distill_head(feats.subset(tr), sub(labels, tr), feats.subset(va), sub(labels, va), {}, None,
                            cfg, small)
    torch.set_num_threads(2)
    ref = {"unsafe_logit": teacher_logit[tr]}
    distilled = agreement(ref, predict(student, feats.subset(tr)))["unsafe"]
    baseline = agreement(ref, predict(plain, feats.subset(tr)))["unsafe"]
    assert history["best_epoch"] >= 1
    assert distilled > baseline + 0.15
