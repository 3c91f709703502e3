"""FP16 conversion, static QDQ / dynamic INT8 of tiny graphs, the INT8 keep/reject rule, distillation."""
from __future__ import annotations
from pathlib import Path

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
    producers = {o: n.op_type for n in model.graph.node for o in n.output}
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    depthwise = [any(a.name == "group" and a.i > 1 for a in n.attribute) for n in convs]
    weights = [producers.get(n.input[1], "initializer") for n in convs]
    assert any(depthwise) and not all(depthwise)  # the tiny image encoder has both kinds
    assert all(w != "DequantizeLinear" for w, dw in zip(weights, depthwise, strict=True) if dw)
    assert any(w == "DequantizeLinear" for w, dw in zip(weights, depthwise, strict=True) if not dw)


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
    # the speed bar decides with the timings of this machine: 0 lets any candidate count as faster, inf none
    accepted = choose_int8(FUSION, paths["fusion"], tmp_path / "b.onnx", calib, lambda p: 1.0, repeats=3,
                           min_speedup=0.0, min_saving_ms=-float("inf"))
    assert set(accepted.fp32_ms) == {"b1", "b16"}
    working = [m for m, c in accepted.candidates.items() if "error" not in c]
    assert accepted.kept and (tmp_path / "b.onnx").exists() and accepted.method == working[0]  # most accurate first
    assert accepted.candidates[accepted.method]["faster"] and accepted.candidates[accepted.method]["agrees"]
    slow = choose_int8(FUSION, paths["fusion"], tmp_path / "c.onnx", calib, lambda p: 1.0, repeats=3,
                       min_speedup=float("inf"))
    assert not slow.kept and not (tmp_path / "c.onnx").exists()
    assert [c["faster"] for c in slow.candidates.values() if "error" not in c] == [False] * len(working)
    assert sorted(x.name for x in tmp_path.iterdir()) == ["b.onnx"]
    # a tiny graph's microseconds are no saving, whatever its ratio
    tiny = choose_int8(FUSION, paths["fusion"], tmp_path / "d.onnx", calib, lambda p: 1.0, repeats=3,
                       min_speedup=0.0, min_saving_ms=1e3)
    assert not tiny.kept and not (tmp_path / "d.onnx").exists()


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


# ------------------------------------------------------------------- int8 judged on real validation sets
def test_ffn_down_projection_stays_fp32(exported):
    """The MatMul fed by the GELU (TinyTextEncoder.out) is found and left fp32; the other is quantised."""
    from crossguard.export.quantize import gelu_fed_matmuls

    _, paths, folder = exported
    model = onnx.load(str(paths["text_encoder"]))
    matmuls = [n for n in model.graph.node if n.op_type == "MatMul"]
    found = gelu_fed_matmuls(paths["text_encoder"])
    assert len(matmuls) == 2 and len(found) == 1
    producers = {o: n for n in model.graph.node for o in n.output}
    down = next(n for n in matmuls if n.name == found[0])
    assert producers[down.input[0]].op_type == "Mul"  # x * 0.5 * (1 + erf(...))
    out = quantize_dynamic_matmul(paths["text_encoder"], folder / "text.ffn.int8.onnx", exclude=found)
    nodes = onnx.load(str(out)).graph.node
    assert [n.name for n in nodes if n.op_type == "MatMul"] == found
    assert any(n.op_type in ("MatMulInteger", "DynamicQuantizeMatMul") for n in nodes)


def test_per_channel_dynamic_int8_has_a_weight_scale_per_column_and_drifts_less(exported):
    """``per_channel``: the quantised MatMul's weight scale is a vector over the output columns (a scalar without),
    and the int8 graph stays at least as close to fp32 on the same inputs."""
    import onnxruntime as ort

    from crossguard.export.quantize import make_int8

    _, paths, folder = exported
    src = paths["text_encoder"]

    def weight_scales(path):
        model = onnx.load(str(path))
        return [onnx.numpy_helper.to_array(i) for i in model.graph.initializer if i.name.endswith("_scale")]

    tensor = make_int8("dynamic_matmul_fp32_ffn_down", src, folder / "t.pt.onnx", TEXT_ENCODER, [])
    channel = make_int8("dynamic_matmul_per_channel_fp32_ffn_down", src, folder / "t.pc.onnx", TEXT_ENCODER, [])
    assert all(v.ndim == 0 for v in weight_scales(tensor))
    assert any(v.ndim == 1 and v.size > 1 for v in weight_scales(channel))
    feeds = _calibration(TEXT_ENCODER, 1)[0]
    runs = [ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
            for p in (src, tensor, channel)]
    assert np.abs(runs[2] - runs[0]).mean() <= np.abs(runs[1] - runs[0]).mean() * 1.05


def _fusion_outputs(unsafe_logit, domain, modality):
    n = len(unsafe_logit)
    dom = np.zeros((n, 14), np.float32)
    dom[np.arange(n), domain] = 1.0
    mod = np.zeros((n, 4), np.float32)
    mod[np.arange(n), modality] = 1.0
    return {"unsafe_logit": np.asarray(unsafe_logit, np.float32), "domain_logits": dom, "modality_logits": mod}


def test_verdict_changes_counts_each_field_and_rates():
    from crossguard.export.validate import verdict_changes

    ref = _fusion_outputs([3, 3, 3, -3, -3, -3, -3, -3], [1, 2, 3, 4, 5, 6, 7, 8], [3] * 8)
    got = _fusion_outputs([3, 3, -3, 3, -3, -3, -3, -3], [1, 0, 3, 4, 5, 6, 7, 0], [3] * 7 + [0])
    labels = np.array([1, 1, 1, 1, 0, 0, 0, 0])
    c = verdict_changes(ref, got, labels=labels)
    assert c["decision_agreement"] == 6 / 8  # samples 2 and 3 flip
    assert c["domain_agreement_flagged"] == 2 / 3  # of the 3 fp32 flags, sample 1 changes domain
    assert c["modality_agreement"] == 7 / 8
    assert c["verdict_agreement"] == 4 / 8  # 0, 4, 5, 6 (7 changes domain and modality)
    assert c["detection"] == {"reference": 0.75, "candidate": 0.75, "delta": 0.0, "samples": 4}
    assert c["false_refusal"]["delta"] == 0.0
    c = verdict_changes(ref, got, labels=np.array([1, 1, 1, 0, 0, 0, 0, 0]))
    assert c["detection"]["delta"] == pytest.approx(-1 / 3) and c["false_refusal"]["delta"] == pytest.approx(1 / 5)
    assert "detection" not in verdict_changes(ref, got)


def test_int8_failures_bounds_every_change():
    from crossguard.export.quantize import int8_failures
    from crossguard.export.settings import Tolerance

    tol = Tolerance()
    good = {"decision_agreement": 0.99, "domain_agreement_flagged": 0.97, "modality_agreement": 0.99,
            "verdict_agreement": 0.9, "detection": {"delta": 0.005}, "false_refusal": {"delta": -0.01}}
    assert int8_failures(good, tol) == []
    assert "unsafe-decision" in int8_failures({**good, "decision_agreement": 0.97}, tol)[0]
    assert "domain" in int8_failures({**good, "domain_agreement_flagged": 0.9}, tol)[0]
    assert "detection" in int8_failures({**good, "detection": {"delta": 0.02}}, tol)[0]
    assert "false refusal" in int8_failures({**good, "false_refusal": {"delta": -0.011}}, tol)[0]


def test_output_drift_ignores_padding_and_reports_cosine():
    from crossguard.export.validate import output_drift

    rng = np.random.default_rng(0)
    tokens = rng.standard_normal((2, 4, 384)).astype(np.float32)
    mask = np.array([[1, 1, 1, 1], [1, 1, 0, 0]])
    noisy = tokens.copy()
    noisy[1, 2:] = -tokens[1, 2:] * 50  # padding positions: garbage that must not count
    ref = [("text_encoder", {"attention_mask": mask}, {"token_embeddings": tokens})]
    got = [("text_encoder", {"attention_mask": mask}, {"token_embeddings": noisy})]
    drift = output_drift(ref, got, "text_encoder")["token_embeddings"]
    assert drift["cos_min"] == pytest.approx(1.0) and drift["max_abs"] > 10
    got[0][2]["token_embeddings"] = -tokens
    assert output_drift(ref, got, "text_encoder")["token_embeddings"]["cos_mean"] == pytest.approx(-1.0)


def test_replay_reruns_only_live_graphs(exported):
    from _export_tiny import tiny_tokenizer_file
    from crossguard.export.samples import fixed_samples, pixel_batch
    from crossguard.export.validate import recording_runner, replay_runner, run_chain
    from crossguard.runtime.preprocess import TextTokenizer

    _, paths, folder = exported
    sessions = {n: onnx_session(p) for n, p in paths.items()}
    samples = fixed_samples(5)
    args = (pixel_batch(samples), [s.text for s in samples], [s.ocr_text for s in samples],
            TextTokenizer(tiny_tokenizer_file(folder)))
    calls = []
    ref = run_chain(recording_runner(onnx_runner(sessions), calls), *args)
    assert [c[0] for c in calls][:2] == ["image_encoder", "text_encoder"]
    replayed = run_chain(replay_runner(calls, {}), *args)
    assert all(np.array_equal(ref[k], replayed[k]) for k in ref)

    class Doubled:  # a fusion "variant" whose change must show: live graphs really run
        def run(self, names, feeds):
            return [2 * v for v in sessions["fusion"].run(names, feeds)]

    doubled = run_chain(replay_runner(calls, {"fusion": Doubled()}), *args)
    assert np.allclose(doubled["unsafe_logit"], 2 * ref["unsafe_logit"], atol=1e-5)
    with pytest.raises(RuntimeError, match="diverged"):
        run_chain(replay_runner(calls[1:], {}), *args)


def test_manifest_samples_seeded_subset_with_labels_and_ocr(tmp_path):
    from crossguard.export.samples import manifest_samples
    from PIL import Image

    Image.new("RGB", (32, 32), (200, 10, 10)).save(tmp_path / "a.png")
    Image.new("RGB", (32, 32), (10, 200, 10)).save(tmp_path / "b.png")
    rows = [{"id": f"s{i}", "image": "a.png" if i % 2 else "b.png", "text": f"text {i}",
             "label": "unsafe" if i % 2 else "safe", "kind": "explicit-text" if i % 2 else "benign",
             "domain": "violence" if i % 2 else None} for i in range(10)]
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(__import__("json").dumps(r) + "\n" for r in rows))
    seen = []

    def ocr(image):
        seen.append(image)
        return "  STEP 1\n STEP 2 "

    got = manifest_samples(manifest, 4, seed=3, ocr=ocr)
    again = manifest_samples(manifest, 4, seed=3)
    assert len(got) == 4 and [s.text for s in got] == [s.text for s in again]
    assert [s.text for s in got] == sorted((s.text for s in got), key=lambda t: int(t.split()[1]))
    assert all(s.label == ("unsafe" if int(s.text.split()[1]) % 2 else "safe") for s in got)
    assert {s.ocr_text for s in got} == {"STEP 1 STEP 2"}  # whitespace joined as the runtime does
    assert len(seen) == len({int(s.text.split()[1]) % 2 for s in got})  # OCR once per distinct image file
    assert all(s.ocr_text == "" for s in again)
    assert len(manifest_samples(manifest, 50)) == 10
    with pytest.raises(ValueError):
        manifest_samples(manifest, 0)


def test_qdq_weights_7bit_except_depthwise(exported):
    """Static QDQ: 7-bit per-channel weights (no int16 saturation on AVX2), 8-bit for depthwise convs;
    exclude_end_convs leaves the first and last Conv in fp32."""
    from onnx import numpy_helper

    _, paths, folder = exported
    calib = _calibration(IMAGE_ENCODER, 2)

    def weight_peaks(path):
        model = onnx.load(str(path))
        inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
        producers = {o: n for n in model.graph.node for o in n.output}
        peaks = {}
        for node in model.graph.node:
            if node.op_type == "Conv" and node.input[1] in producers:
                dq = producers[node.input[1]]
                if dq.op_type == "DequantizeLinear" and dq.input[0] in inits:
                    depthwise = any(a.name == "group" and a.i > 1 for a in node.attribute)
                    peaks[node.name] = (depthwise, int(np.abs(inits[dq.input[0]].astype(np.int32)).max()))
        return peaks

    peaks = weight_peaks(quantize_qdq(paths["image_encoder"], folder / "img.q.onnx", IMAGE_ENCODER, calib))
    assert len(peaks) == 3
    assert all(peak == 127 if depthwise else peak <= 64 for depthwise, peak in peaks.values())
    ends = weight_peaks(quantize_qdq(paths["image_encoder"], folder / "img.e.onnx", IMAGE_ENCODER, calib,
                                     exclude_end_convs=True))
    assert [dw for dw, _ in ends.values()] == [True]  # only the depthwise conv between stem and head
    full = weight_peaks(quantize_qdq(paths["image_encoder"], folder / "img.f.onnx", IMAGE_ENCODER, calib,
                                     reduce_range=False))
    assert all(peak == 127 for _, peak in full.values())


def test_int8_together_keeps_the_largest_saving_that_passes():
    """When all kept int8 graphs together break a bound, the subset saving the most time that passes
    is shipped; every tried combination is reported."""
    from crossguard.export.pipeline import _int8_together

    ok = {"decision_agreement": 1.0, "verdict_agreement": 1.0, "domain_agreement_flagged": 1.0,
          "modality_agreement": 1.0, "detection": {"reference": 0.8, "candidate": 0.8, "delta": 0.0}}
    bad = {**ok, "detection": {"reference": 0.8, "candidate": 0.78, "delta": -0.02}}

    class Chain:
        def __init__(self):
            self.calls = []

        def judge(self, swapped, threads, drift_of=None):
            self.calls.append(sorted(swapped))
            return bad if {"image_encoder", "text_encoder"} <= set(swapped) else ok

    def entry(saved):
        return {"path": f"{saved}.onnx", "latency_ms": {"b1": 10.0 - saved, "b16": 160.0},
                "fp32_latency_ms": {"b1": 10.0, "b16": 160.0}}

    kept = {"image_encoder": entry(5), "text_encoder": entry(3), "fusion": entry(1)}
    report, chain = {"chain": {}, "int8_samples": {}}, Chain()
    got = _int8_together(kept, chain, 1, report, lambda s: None)
    assert sorted(got) == ["fusion", "image_encoder"]  # saves 6 ms; image+text (8) fails
    assert chain.calls == [["fusion", "image_encoder", "text_encoder"], ["image_encoder", "text_encoder"],
                           ["fusion", "image_encoder"]]
    assert report["chain"]["int8"]["graphs"] == ["fusion", "image_encoder"]
    assert len(report["chain"]["int8"]["tried"]) == 2 and report["chain"]["int8"]["failures"] == []

    class Never(Chain):
        def judge(self, swapped, threads, drift_of=None):
            return bad

    report = {"chain": {}, "int8_samples": {}}
    assert _int8_together(kept, Never(), 1, report, lambda s: None) == {}
    assert len(report["chain"]["int8_rejected"]) == 7


def test_distillation_comparison_reports_thresholded_test_metrics(tmp_path, monkeypatch):
    """``compare`` calibrates every model on val and scores test: detection/FRR/F1 at the val threshold."""
    from crossguard.export import distill
    from crossguard.schemas import Sample
    from crossguard.train.guard import features
    from crossguard.train.guard.features import Features

    rng = np.random.default_rng(0)
    kinds = ["implicit", "explicit-text", "benign", "benign-hard"]

    def split(name, n):
        samples = [Sample(id=f"{name}{i}", image="x.png", text="t", kind=kinds[i % 4],
                          label="unsafe" if i % 4 < 2 else "safe", domain="violence" if i % 4 < 2 else None)
                   for i in range(n)]
        signal = np.asarray([1.0 if s.unsafe else -1.0 for s in samples], np.float32)[:, None]
        text = rng.standard_normal((n, 384)).astype(np.float32) + signal
        feats = Features(image_tokens=rng.standard_normal((n, 49, 1280)).astype(np.float16),
                         image_embedding=rng.standard_normal((n, 1280)).astype(np.float32),
                         text_tokens=np.repeat(text[:, None, :], 4, 1).astype(np.float16),
                         text_mask=np.ones((n, 4), np.int64), text_embedding=text,
                         ocr_embedding=np.zeros((n, 384), np.float32), ocr_present=np.zeros((n, 1), np.float32),
                         ids=[s.id for s in samples], ocr_text=[""] * n,
                         blank_image_tokens=np.zeros((49, 1280), np.float16),
                         blank_image_embedding=np.zeros(1280, np.float32),
                         empty_text_tokens=np.zeros((4, 384), np.float16), empty_text_mask=np.ones(4, np.int64),
                         empty_text_embedding=np.zeros(384, np.float32))
        return samples, feats

    data = {name: split(name, n) for name, n in (("train", 32), ("val", 24), ("test", 24))}
    monkeypatch.setattr("crossguard.manifest.read_manifest", lambda p: data[Path(p).stem][0])
    monkeypatch.setattr(features, "cached_features", lambda samples, *a, **k: data[samples[0].id.rstrip("0123456789")][1])
    res = distill.compare(tmp_path, teacher_epochs=1, cfg=distill.DistillConfig(epochs=3, batch_size=8, threads=1))
    for name in ("teacher", "student_distilled", "student_labels_only"):
        test = res[name]["test"]
        assert test["n"] == 24 and 0 <= test["detection_rate"] <= 1 and 0 <= test["false_refusal_rate"] <= 1
        assert set(test["flag_rate_per_kind"]) == set(kinds)
    for name in ("student_distilled", "student_labels_only"):  # 12 steps each: enough for the strong text signal
        assert res[name]["test_auroc"] > 0.9, (name, res[name]["test_auroc"])
    assert res["teacher"]["agreement_with_teacher"]["unsafe"] == 1.0
    table = distill.format_comparison(res)
    assert table.count("\n") == 4 and "student_distilled" in table


def test_percentile_calibration_clips_activation_ranges(exported):
    from crossguard.export.quantize import candidate_methods

    _, paths, folder = exported
    calib = _calibration(IMAGE_ENCODER, 2)

    def activation_scales(path):
        model = onnx.load(str(path))
        inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
        weights = {i.name for i in model.graph.initializer if i.data_type == onnx.TensorProto.FLOAT and i.dims}
        return {n.input[0]: float(inits[n.input[1]]) for n in model.graph.node
                if n.op_type == "QuantizeLinear" and n.input[0] not in weights and inits[n.input[1]].ndim == 0}

    minmax = activation_scales(quantize_qdq(paths["image_encoder"], folder / "img.mm.onnx", IMAGE_ENCODER, calib,
                                            exclude_end_convs=True))
    clipped = activation_scales(quantize_qdq(paths["image_encoder"], folder / "img.pc.onnx", IMAGE_ENCODER, calib,
                                             exclude_end_convs=True, percentile=99.0))
    shared = set(minmax) & set(clipped)
    assert shared and sum(clipped[k] for k in shared) < sum(minmax[k] for k in shared)
    assert "qdq_fp32_ends_percentile" in candidate_methods(IMAGE_ENCODER)


def test_picture_word_drift_refuses_an_int8_graph():
    from crossguard.export.quantize import int8_failures
    from crossguard.export.settings import Tolerance

    same = {"decision_agreement": 1.0, "verdict_agreement": 1.0}
    assert int8_failures({**same, "picture_word_agreement": 0.97}, Tolerance()) == []
    (why,) = int8_failures({**same, "picture_word_agreement": 0.25}, Tolerance())
    assert "picture-word agreement 0.250" in why


def test_labelled_int8_samples_are_made_offline_with_both_labels():
    from crossguard.export.samples import labelled_samples
    from crossguard.train.typography import INCITEMENTS

    a = labelled_samples(30, seed=2)
    b = labelled_samples(30, seed=2)
    assert [(s.text, s.label, s.ocr_text) for s in a] == [(s.text, s.label, s.ocr_text) for s in b]
    assert {s.label for s in a} == {"safe", "unsafe"} and len(a) == 30
    typed = [s for s in a if s.text in INCITEMENTS]
    assert len(typed) == 10 and all(s.ocr_text for s in typed)  # without an OCR callable: the typed text itself


def test_a_rate_change_of_exactly_the_bound_passes():
    from crossguard.export.quantize import int8_failures
    from crossguard.export.settings import Tolerance

    same = {"decision_agreement": 1.0, "verdict_agreement": 1.0}
    one_in_a_hundred = {"reference": 0.93, "candidate": 0.92, "delta": 0.92 - 0.93}  # -0.01000000000000001
    assert int8_failures({**same, "detection": one_in_a_hundred}, Tolerance()) == []
    assert int8_failures({**same, "detection": {"reference": 0.93, "candidate": 0.91, "delta": -0.02}}, Tolerance())
