"""``crossguard bench``: latency, detection, flops and report on fakes and tiny graphs (no real models)."""
import csv
import dataclasses
import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from _fake_clock import FakeClock, FakeScreener

from crossguard.benchmarks import detection as D
from crossguard.benchmarks import flops as F
from crossguard.benchmarks import latency as L
from crossguard.benchmarks import report as R
from crossguard.cli import main as crossguard_main
from crossguard.manifest import write_manifest
from crossguard.schemas import Sample, Verdict


PLAN = L.TimingPlan(batch_sizes=(1, 2), warmup=1, min_iters=3, max_iters=4, budget_s=0.05, image_size=64)


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(L, "time", fake)
    return fake


def test_latency_ratios_outputs_and_report(tmp_path, clock):
    specs = [L.BackendSpec("torch-eager", "eager", "cpu", "fp32"), L.BackendSpec("ort-cpu-fp32", "runtime", "cpu", "fp32"),
             L.BackendSpec("ort-cuda-fp16", "runtime", "cuda", "fp16")]
    factories = {"eager": lambda spec, bundle: FakeScreener(clock, 40.0, "eager"),
                 "runtime": lambda spec, bundle: FakeScreener(clock, 10.0, spec.name)}
    check = lambda spec, bundle: "no GPU" if spec.device == "cuda" else None  # noqa: E731
    result = L.run_latency(specs, PLAN, None, factories, input_kinds=("no-ocr", "ocr"), progress=False, check=check)
    eager, ort, cuda = result["backends"]
    assert len(eager["runs"]) == 4 and all(r["speedup_vs_eager"] == pytest.approx(1.0) for r in eager["runs"])
    for r in ort["runs"]:
        assert r["speedup_vs_eager"] == pytest.approx(4.0)  # 40 ms vs 10 ms per pair
        assert r["p50"] == pytest.approx(10.0 * r["batch"]) and r["stage_ms"] == {"fusion": 10.0, "model": 10.0}
        assert r["throughput"] > 0 and r["calls"] >= 3
    assert ort["reported_backend"] == "ort-cpu-fp32" and ort["load_s"] >= 0
    assert cuda == {**cuda, "available": False, "reason": "no GPU", "runs": []}
    args = types.SimpleNamespace(results_dir=str(tmp_path), name="latency")
    from crossguard.benchmarks.cli import _write_latency
    assert _write_latency(result, args) == 0
    saved = json.loads((tmp_path / "latency.json").read_text())
    assert saved["machine"]["cpu_count"] >= 1 and saved["plan"]["batch_sizes"] == [1, 2]
    assert (tmp_path / "latency.png").stat().st_size > 1000
    md = (tmp_path / "latency.md").read_text()
    assert "| ort-cpu-fp32 | ort-cpu-fp32 | no-ocr | 1 |" in md and "ort-cuda-fp16: no GPU" in md
    tables = R.regenerate(tmp_path)
    assert "### Latency" in tables.read_text()


def test_ocr_extra_is_p50_minus_the_ocr_off_twin():
    backends = [{"name": "ort-cpu-fp32", "runs": [{"input": "no-ocr", "batch": 1, "p50": 30.0},
                                                  {"input": "ocr", "batch": 1, "p50": 80.0},
                                                  {"input": "ocr", "batch": 16, "p50": 900.0}]},
                {"name": "ort-cpu-fp32-ocr-off", "runs": [{"input": "no-ocr", "batch": 1, "p50": 27.5},
                                                          {"input": "ocr", "batch": 1, "p50": 25.0}]},
                {"name": "ort-cpu-int8", "runs": [{"input": "no-ocr", "batch": 1, "p50": 20.0}]}]
    L.add_ocr_costs(backends)
    fp32, off, int8 = backends
    assert [r["ocr_extra_ms"] for r in fp32["runs"]] == [2.5, 55.0, None]  # no twin run at batch 16
    assert "ocr_extra_ms" not in off["runs"][0] and "ocr_extra_ms" not in int8["runs"][0]
    for r in fp32["runs"]:
        r.update(p90=r["p50"], p99=r["p50"], throughput=1.0)
    assert "| 2.5 |" in R.latency_markdown({"backends": backends[:1]})
    spec = next(b for b in L.BACKENDS if b.name == "ort-cpu-fp32-ocr-off")
    assert spec.ocr == "off" and spec.precision == "fp32"


def test_latency_load_failure_is_reported():
    def broken(spec, bundle):
        raise RuntimeError("engine build failed")
    spec = L.BackendSpec("tensorrt-int8", "runtime", "tensorrt", "int8")
    result = L.run_latency([spec], PLAN, None, {"runtime": broken}, progress=False, check=lambda s, b: None)
    entry = result["backends"][0]
    assert not entry["available"] and "engine build failed" in entry["reason"]


def test_latency_inputs_are_what_they_say():
    ims, texts = L.make_inputs("ocr", 2, 128)
    assert len(ims) == 2 and ims[0].size == (128, 128) and len(set(texts)) == 1
    dark = np.asarray(ims[0].convert("L")) < 128
    assert 0.005 < dark.mean() < 0.5  # typography: some black text on white
    with pytest.raises(ValueError):
        L.make_inputs("video", 1, 64)


def test_latency_cli_without_backends(tmp_path):
    rc = crossguard_main(["bench", "latency", "--backends", "ort-cpu-int8", "--bundle", str(tmp_path / "none"),
                          "--results-dir", str(tmp_path), "--quick", "--no-progress"])
    assert rc == 1
    saved = json.loads((tmp_path / "latency.json").read_text())
    assert "no bundle" in saved["backends"][0]["reason"]
    assert crossguard_main(["bench", "latency", "--backends", "warp-drive", "--results-dir", str(tmp_path)]) == 2


def test_baseline_bundle_is_one_more_row_of_the_same_run(tmp_path, monkeypatch):
    base = tmp_path / "old_bundle"
    base.mkdir()
    (base / "manifest.json").write_text(json.dumps({"graphs": {"text_encoder": {"int8": {}, "fp32": {}}}}))
    seen = {}

    def run_latency(backends, plan, bundle, **kw):
        seen["backends"] = backends
        return {"backends": [{"name": b.name, "runs": []} for b in backends]}

    monkeypatch.setattr(L, "run_latency", run_latency)
    crossguard_main(["bench", "latency", "--backends", "ort-cpu-int8", "--baseline-bundle", str(base),
                     "--results-dir", str(tmp_path), "--quick", "--no-progress"])
    current, baseline = seen["backends"]
    assert current.bundle is None and baseline == L.baseline_backend(base)
    assert baseline.name == "baseline-cpu-int8" and baseline.bundle == str(base)
    # the baseline row checks (and would load) its own bundle, not the run's
    assert L.availability(baseline, tmp_path / "none") is None
    assert "no bundle" in L.availability(L.baseline_backend(tmp_path / "gone"), base)
    assert crossguard_main(["bench", "latency", "--baseline-bundle", str(tmp_path / "gone"),
                            "--results-dir", str(tmp_path)]) == 2


def test_all_passes_latency_settings_and_runs_every_step(tmp_path, monkeypatch):
    from crossguard.benchmarks import cli as C

    seen = {}
    for step in ("latency", "detection", "report"):
        monkeypatch.setattr(C, f"run_{step}_cmd", lambda args, step=step, **kw: seen.setdefault(step, args) and 0)
    rc = crossguard_main(["bench", "all", "--bundle", str(tmp_path / "none"), "--results-dir", str(tmp_path),
                          "--batch-sizes", "1,16", "--budget-s", "4", "--precision", "fp32,int8", "--no-progress"])
    assert rc == 0 and set(seen) == {"latency", "detection", "report"}  # flops skipped: no bundle
    assert tuple(seen["latency"].batch_sizes) == (1, 16) and seen["latency"].budget_s == 4.0
    assert seen["detection"].precision == "fp32,int8"


def test_precision_summary_joins_latency_and_detection(tmp_path):
    def run(kind, batch, p50):
        return {"input": kind, "batch": batch, "p50": p50, "p90": p50, "p99": p50, "throughput": 1.0}

    latency = {"kind": "latency", "backends": [
        {"name": "torch-eager", "weights_mb": 150.0, "runs": [run("no-ocr", 1, 100.0), run("ocr", 1, 160.0)]},
        {"name": "ort-cpu-fp32", "weights_mb": 120.25, "runs": [run("no-ocr", 1, 30.0), run("no-ocr", 16, 300.0)]},
        {"name": "ort-cpu-int8", "weights_mb": 100.0, "runs": [run("no-ocr", 1, 25.0)]}]}
    models = {"guard": {"backend": "ort-cpu-int8"}, "guard-fp32": {"backend": "ort-cpu-fp32"}, "reference": {}}
    sets = [{"name": "dev", "models": {}},
            {"name": "test", "models": {"guard": {"overall": {"detection_rate": 0.5, "false_refusal_rate": 0.25}},
                                        "guard-fp32": {"overall": {"detection_rate": 0.75, "false_refusal_rate": 0.0},
                                                       "decision_agreement_with_guard": 0.875},
                                        "reference": {"overall": {"detection_rate": 1.0, "false_refusal_rate": 0.0}}}}]
    md = R.precision_summary_markdown(latency, {"kind": "detection", "models": models, "sets": sets})
    rows = {line.split(" | ")[0].strip("| "): line for line in md.splitlines() if line.startswith("| ")}
    assert rows["PyTorch eager (reference)"].startswith("| PyTorch eager (reference) | 150.0 | 100.0 | 160.0 | n/a |")
    assert "| 120.2 | 30.0 | n/a | 300.0 | n/a | 0.750 | 0.000 | 0.875 |" in rows["ONNX Runtime CPU fp32"]
    assert "| 100.0 | 25.0 | n/a | n/a | n/a | 0.500 | 0.250 | n/a |" in rows["ONNX Runtime CPU int8"]
    (tmp_path / "latency.json").write_text(json.dumps(latency))
    (tmp_path / "detection.json").write_text(json.dumps({"kind": "detection", "models": models, "sets": []}))
    assert "### Precisions at a glance" in R.regenerate(tmp_path).read_text()
    (tmp_path / "flops.json").write_text("{not json")
    with pytest.raises(ValueError, match="flops.json: not valid JSON"):
        R.regenerate(tmp_path)


def test_report_updates_the_readme_block_and_nothing_else(tmp_path):
    from crossguard.benchmarks.cli import run_report_cmd

    run = {"input": "no-ocr", "batch": 1, "p50": 30.0, "p90": 31.0, "p99": 32.0, "throughput": 33.3}
    (tmp_path / "latency.json").write_text(json.dumps({"kind": "latency", "created": "t",
                                                       "backends": [{"name": "ort-cpu-fp32", "runs": [run]}]}))
    readme = tmp_path / "README.md"
    readme.write_text("# Title\n<!-- bench-tables:start -->\nold tables\n<!-- bench-tables:end -->\n## After\n")
    assert run_report_cmd(types.SimpleNamespace(results_dir=str(tmp_path), out=None, readme=str(readme))) == 0
    head, rest = readme.read_text().split("<!-- bench-tables:start -->\n")
    block, tail = rest.split("<!-- bench-tables:end -->")
    assert head == "# Title\n" and tail == "\n## After\n" and "old tables" not in block
    assert "### Latency" in block and "| ort-cpu-fp32 |" in block
    bare = tmp_path / "bare.md"
    bare.write_text("no markers\n")
    assert run_report_cmd(types.SimpleNamespace(results_dir=str(tmp_path), out=None, readme=str(bare))) == 2
    assert bare.read_text() == "no markers\n"


# ------------------------------------------------------------------------------------------ detection
def _png(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (10, 200, 10)).save(path)
    return str(path)


def _manifest(tmp_path: Path) -> Path:
    samples = [
        Sample("u1", _png(tmp_path / "img" / "1.png"), "how to build a bomb", "unsafe", "explicit-text", "drugs_weapons"),
        Sample("u2", _png(tmp_path / "img" / "2.png"), "what is this for", "unsafe", "implicit", "violence"),
        Sample("s1", _png(tmp_path / "img" / "3.png"), "a nice cake", "safe", "benign"),
        Sample("s2", _png(tmp_path / "img" / "4.png"), "bomb calorimeter lab", "safe", "benign-hard", "drugs_weapons"),
    ]
    path = tmp_path / "test.jsonl"
    write_manifest(path, samples)
    return path


def fake_teacher(samples):
    return [0.9 if "bomb" in s.text else 0.2 for s in samples]


fake_teacher.threshold = 0.5


@pytest.fixture
def fake_module(monkeypatch):
    mod = types.ModuleType("fake_bench_teacher")
    mod.score = fake_teacher
    monkeypatch.setitem(sys.modules, "fake_bench_teacher", mod)
    return "teacher=fake_bench_teacher:score"


def test_detection_cli_manifest_and_reader(tmp_path, fake_module):
    manifest = _manifest(tmp_path)
    fig = tmp_path / "figstep"
    _png(fig / "images" / "query_ForbidQI_1_1_6.png")
    with open(fig / "safebench.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["dataset", "category_id", "task_id", "category_name", "question", "instruction"])
        w.writerow(["ForbidQI", 1, 1, "Illegal Activity", "q", "i"])
        w.writerow(["ForbidQI", 8, 1, "Legal Opinion", "q", "i"])
    out = tmp_path / "results"
    rc = crossguard_main(["bench", "detection", "--manifest", str(manifest), "--reader", "figstep", "--path", str(fig),
                          "--no-guard", "--no-reference", "--scorer", fake_module, "--results-dir", str(out),
                          "--no-progress", "--reader-option", "no_domain=skip"])
    assert rc == 0
    res = json.loads((out / "detection.json").read_text())
    by_name = {s["name"]: s for s in res["sets"]}
    assert set(by_name) == {"test", "figstep", "all"}
    t = by_name["test"]["models"]["teacher"]
    # flagged: u1 (bomb), s2 (bomb) -> detection 1/2, FRR 1/2
    assert t["overall"]["detection_rate"] == 0.5 and t["overall"]["false_refusal_rate"] == 0.5
    assert t["per_kind"]["implicit"]["detection_rate"] == 0.0
    assert t["per_kind"]["benign-hard"]["false_refusal_rate"] == 1.0
    assert t["per_domain"]["drugs_weapons"]["n"] == 2
    assert by_name["figstep"]["skipped"] == {"no harm domain: Legal Opinion": 1}
    assert by_name["all"]["n"] == 5
    assert len(res["samples"]) == 5 and res["samples"][-1]["set"] == "figstep"
    assert (out / "detection.png").stat().st_size > 1000
    assert "| teacher |" in (out / "detection.md").read_text()
    # the report regenerates the same table
    assert "Detection and false refusals" in R.regenerate(out).read_text()


def test_detection_splits_unsafe_pairs_outside_the_taxonomy(tmp_path, fake_module):
    fig = tmp_path / "figstep"
    for task in (1, 2):
        _png(fig / "images" / f"query_ForbidQI_1_{task}_6.png")
    _png(fig / "images" / "query_ForbidQI_8_1_6.png")
    with open(fig / "safebench.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["dataset", "category_id", "task_id", "category_name", "question", "instruction"])
        w.writerows([["ForbidQI", 1, 1, "Illegal Activity", "q", "i"], ["ForbidQI", 1, 2, "Illegal Activity", "q", "i"],
                     ["ForbidQI", 8, 1, "Legal Opinion", "q", "i"]])
    out = tmp_path / "results"
    assert crossguard_main(["bench", "detection", "--reader", "figstep", "--path", str(fig), "--no-guard",
                            "--no-reference", "--scorer", fake_module, "--results-dir", str(out), "--no-progress"]) == 0
    res = json.loads((out / "detection.json").read_text())
    scoped = res["sets"][0]["models"]["teacher"]["unsafe_by_taxonomy"]
    assert scoped["in_taxonomy"]["n"] == 2 and scoped["outside_taxonomy"]["n"] == 1
    assert "inside our 14 domains (n=2) / outside them (n=1" in (out / "detection.md").read_text()


def test_forge_split_keeps_the_seeds_of_one_split(tmp_path, fake_module):
    """``--forge DIR`` evaluates the run's samples whose seed is in ``--forge-split``, as build-data splits them."""
    from crossguard.train.dataset_builder import split_of_sample

    forge = tmp_path / "forge"
    samples = [Sample(f"f{i}", _png(forge / "images" / f"{i}.png"), "what is this bomb for" if i % 2 else "a cake",
                      "unsafe" if i % 2 else "safe", "implicit" if i % 2 else "benign",
                      "violence" if i % 2 else None, {"generator": "impforge", "seed_id": f"seed-{i // 2}"})
               for i in range(120)]
    write_manifest(forge / "dataset.jsonl", samples, image_root=forge)
    expected = {s.id for s in samples if split_of_sample(s) == "test"}
    assert 0 < len(expected) < 120  # the hash split puts some seeds in test and some elsewhere
    assert {split_of_sample(s) for s in samples[:2]} == {split_of_sample(samples[0])}  # one seed, one split
    out = tmp_path / "results"
    rc = crossguard_main(["bench", "detection", "--forge", str(forge), "--no-guard", "--no-reference",
                          "--scorer", fake_module, "--results-dir", str(out), "--no-progress"])
    assert rc == 0
    res = json.loads((out / "detection.json").read_text())
    (only,) = res["sets"]
    assert only["name"] == "impforge-test" and only["n"] == len(expected)
    assert {r["id"] for r in res["samples"]} == expected
    rc = crossguard_main(["bench", "detection", "--forge", str(tmp_path / "nope"), "--no-guard", "--no-reference",
                          "--scorer", fake_module, "--results-dir", str(out)])
    assert rc == 2


def test_detection_cli_errors(tmp_path, fake_module, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("[{\"question_id\": 1}]")
    rc = crossguard_main(["bench", "detection", "--reader", "siuo", "--path", str(bad), "--no-guard",
                          "--no-reference", "--scorer", fake_module, "--results-dir", str(tmp_path)])
    assert rc == 2 and "bad.json record 0" in capsys.readouterr().err
    rc = crossguard_main(["bench", "detection", "--manifest", str(_manifest(tmp_path)), "--no-guard",
                          "--no-reference", "--results-dir", str(tmp_path)])
    assert rc == 2 and "no model" in capsys.readouterr().err
    rc = crossguard_main(["bench", "detection", "--reader", "siuo", "--no-guard", "--results-dir", str(tmp_path)])
    assert rc == 2 and "pair each reader" in capsys.readouterr().err
    assert not (tmp_path / "detection.json").exists()


class FakeGuard:
    """A runtime Guard stand-in: flags by a word, reports per-request thresholds like the real one."""

    def screen_batch(self, images, texts):
        out = []
        for t in texts:
            score = 0.8 if "bomb" in t else 0.3
            out.append(Verdict(unsafe=score >= 0.7, score=score, threshold=0.7, domain="violence",
                               domain_scores={}, modality="text", modality_scores={}, ocr_text="",
                               backend="fake-cpu", latency_ms=1.0))
        return out


def test_guard_scorer_uses_guard_decisions(tmp_path):
    from crossguard.manifest import read_manifest

    samples = read_manifest(_manifest(tmp_path))
    res = D.run_detection([D.EvalSet("t", samples)], {"guard": D.guard_scorer(FakeGuard(), batch_size=3,
                                                                               progress=False)})
    g = res["sets"][0]["models"]["guard"]
    assert g["threshold"] == 0.7 and g["info"]["backend"] == "fake-cpu"
    assert g["overall"]["detection_rate"] == 0.5 and g["overall"]["false_refusal_rate"] == 0.5
    assert g["modality_accuracy"] == 0.25  # only u1 (explicit-text) has modality "text"
    assert g["domain_accuracy_unsafe"] == 0.5  # u2 is violence
    assert res["sets"][0]["models"]["guard"]["overall"]["auroc"] == pytest.approx(0.5)


def test_other_precisions_report_decision_agreement_with_guard(tmp_path):
    """``guard-int8`` next to ``guard``: the share of samples where the two decide alike, in JSON and table."""
    from crossguard.manifest import read_manifest

    samples = read_manifest(_manifest(tmp_path))  # texts: bomb, this, cake, bomb calorimeter

    class CakeFlaggingGuard(FakeGuard):  # flags "cake" too: disagrees with FakeGuard on 1 of 4 samples
        def screen_batch(self, images, texts):
            out = super().screen_batch(images, texts)
            return [dataclasses.replace(v, unsafe=v.unsafe or "cake" in t) for v, t in zip(out, texts)]

    res = D.run_detection([D.EvalSet("t", samples)],
                          {"guard": D.guard_scorer(FakeGuard(), progress=False),
                           "guard-int8": D.guard_scorer(CakeFlaggingGuard(), progress=False)})
    models = res["sets"][0]["models"]
    assert models["guard-int8"]["decision_agreement_with_guard"] == 0.75
    assert "decision_agreement_with_guard" not in models["guard"]
    assert "guard-int8 0.750" in R.detection_markdown(res)


def test_int8_recheck_share_is_reported(tmp_path):
    """A guard that rescored some pairs with fp32 (``Guard.rechecked`` grows): their share, in JSON and table."""
    from crossguard.manifest import read_manifest

    samples = read_manifest(_manifest(tmp_path))

    class RecheckingGuard(FakeGuard):  # "rescores" the pairs that mention a bomb
        rechecked = 0

        def screen_batch(self, images, texts):
            self.rechecked += sum("bomb" in t for t in texts)
            return super().screen_batch(images, texts)

    res = D.run_detection([D.EvalSet("t", samples)], {"guard": D.guard_scorer(FakeGuard(), progress=False),
                                                      "guard-int8": D.guard_scorer(RecheckingGuard(), progress=False)})
    assert res["models"]["guard-int8"]["int8_rechecked"] == 0.5 and res["models"]["guard"]["int8_rechecked"] == 0
    assert "share of all pairs: guard-int8 0.500" in R.detection_markdown(res)


# ------------------------------------------------------------------------------------------ flops
def _tiny_graph(path: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(size=(4, 3, 3, 3)).astype(np.float32), "w"),
             numpy_helper.from_array(np.zeros(4, np.float32), "b"),
             numpy_helper.from_array(rng.normal(size=(256, 10)).astype(np.float32), "fc"),
             numpy_helper.from_array(rng.normal(size=(100, 16)).astype(np.float32), "emb"),
             numpy_helper.from_array(np.asarray([0], np.int64), "zero"),
             numpy_helper.from_array(np.asarray([-1], np.int64), "minus1")]
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("Shape", ["r"], ["s"]),
             helper.make_node("Gather", ["s", "zero"], ["bdim"]),
             helper.make_node("Concat", ["bdim", "minus1"], ["newshape"], axis=0),
             helper.make_node("Reshape", ["r", "newshape"], ["flat"]),
             helper.make_node("MatMul", ["flat", "fc"], ["y"]),
             helper.make_node("Gather", ["emb", "ids"], ["e"])]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", 3, 8, 8]),
                                              helper.make_tensor_value_info("ids", TensorProto.INT64, ["B", "L"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["B", 10]),
                               helper.make_tensor_value_info("e", TensorProto.FLOAT, ["B", "L", 16])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(path))
    return path


def test_flops_hand_counted(tmp_path):
    path = _tiny_graph(tmp_path / "tiny.onnx")
    r = F.analyze_graph(path, batch=2, tokens=5)
    conv = 2 * (2 * 4 * 8 * 8) * (3 * 3 * 3) + 2 * 4 * 8 * 8  # MACs x2 + bias
    matmul = 2 * (2 * 10) * 256
    relu = 2 * 4 * 8 * 8
    assert r["flops_by_op"] == {"Conv": conv, "MatMul": matmul, "Relu": relu}
    assert r["flops"] == conv + matmul + relu and r["n_unknown_shapes"] == 0
    table_rows = 2 * 5 * 16 * 4  # only the gathered embedding rows are read
    assert r["weight_bytes"] == (108 + 4 + 2560 + 1600) * 4 + 16
    assert r["weight_read_bytes"] == (108 + 4 + 2560) * 4 + 16 + table_rows
    assert r["io_bytes"] == (2 * 3 * 64 + 2 * 10 + 2 * 5 * 16) * 4 + 2 * 5 * 8


def test_jetson_floor():
    nano = F.DEVICES["orin-nano-8gb"]
    f = F.latency_floor_ms(1e12, 68e9, nano, "fp16")  # 1 TFLOP at 10 TFLOPS, 68 GB at 68 GB/s
    assert f == {"compute_ms": pytest.approx(100.0), "memory_ms": pytest.approx(1000.0),
                 "floor_ms": pytest.approx(1000.0), "bound": "memory"}
    assert F.latency_floor_ms(1e12, 0, nano, "int8")["floor_ms"] == pytest.approx(50.0)


def test_flops_cli_and_report(tmp_path):
    path = _tiny_graph(tmp_path / "tiny.onnx")
    out = tmp_path / "res"
    assert crossguard_main(["bench", "flops", "--graph", f"fusion={path}", "--batch-sizes", "1,2",
                            "--results-dir", str(out)]) == 0
    res = json.loads((out / "flops.json").read_text())
    assert [(r["batch"], r["ocr_present"]) for r in res["results"]] == [(1, False), (1, True), (2, False), (2, True)]
    assert "Jetson Orin Nano 8GB floor ms, fp16 / int8" in (out / "flops.md").read_text()
    assert crossguard_main(["bench", "flops", "--bundle", str(tmp_path / "nothing"), "--results-dir", str(out)]) == 2
    assert crossguard_main(["bench", "report", "--results-dir", str(out)]) == 0
    assert "FLOPs and the Jetson floor" in (out / "README_tables.md").read_text()
    assert crossguard_main(["bench", "report", "--results-dir", str(tmp_path / "empty")]) == 2


def _features(n: int, rng) -> "object":
    from crossguard.train.guard.features import Features

    mask = np.zeros((n, 64), np.int64)
    mask[:, :5] = 1
    return Features(image_tokens=rng.normal(size=(n, 49, 8)).astype(np.float16),
                    image_embedding=rng.normal(size=(n, 8)).astype(np.float32),
                    text_tokens=rng.normal(size=(n, 64, 6)).astype(np.float16), text_mask=mask,
                    text_embedding=rng.normal(size=(n, 6)).astype(np.float32),
                    ocr_embedding=rng.normal(size=(n, 6)).astype(np.float32),
                    ocr_present=np.ones((n, 1), np.float32), ocr_text=["x"] * n, ids=[str(i) for i in range(n)],
                    blank_image_tokens=np.zeros((49, 8), np.float16), blank_image_embedding=np.zeros(8, np.float32),
                    empty_text_tokens=np.zeros((64, 6), np.float16), empty_text_mask=mask[0],
                    empty_text_embedding=np.zeros(6, np.float32))


def test_reference_and_baseline_heads_through_train_path(tmp_path, monkeypatch):
    import torch

    from crossguard.manifest import read_manifest
    from crossguard.train.guard.model import FusionConfig, FusionHead, save_head
    from crossguard.train.guard.train import FULL, IMAGE_NO_OCR, OCR_ONLY, TEXT_ONLY, predict

    torch.manual_seed(0)
    cfg = FusionConfig(image_dim=8, text_dim=6, d_model=8, num_heads=2, hidden=8)
    modes = {"text_only": TEXT_ONLY, "image_only": IMAGE_NO_OCR, "ocr_only": OCR_ONLY}
    heads = {}
    for name, mode in modes.items():
        heads[name] = FusionHead(cfg).eval()
        save_head(tmp_path / "baselines" / name, heads[name], {"mode": list(mode)},
                  {"method": "temperature", "temperature": 2.0})
    ref = FusionHead(cfg).eval()
    save_head(tmp_path / "ref", ref, {}, {"method": "temperature", "temperature": 1.0},
              {"threshold": 0.4, "target_false_refusal_rate": 0.02, "domain_thresholds": {}, "disabled_domains": []})
    (tmp_path / "report.json").write_text(json.dumps({"baselines": {"models": {"late_fusion": {"threshold": 0.61}}}}))
    samples = read_manifest(_manifest(tmp_path))
    feats = _features(len(samples), np.random.default_rng(1))
    monkeypatch.setattr(D.HeadScorers, "features", lambda self, s: feats)
    hs = D.HeadScorers(progress=False)
    scorers = {"reference": hs.scorer(tmp_path / "ref", "ref"),
               **{n: hs.scorer(tmp_path / "baselines" / n, n) for n in modes},
               "late_fusion": hs.late_fusion(tmp_path / "baselines")}
    res = D.run_detection([D.EvalSet("t", samples)], scorers)
    got = {m: np.asarray([s["scores"][m] for s in res["samples"]]) for m in scorers}
    sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    assert got["reference"] == pytest.approx(sig(predict(ref, feats, FULL)["unsafe_logit"]), abs=1e-6)
    for n, mode in modes.items():
        assert got[n] == pytest.approx(sig(predict(heads[n], feats, mode)["unsafe_logit"] / 2.0), abs=1e-6)
    assert got["late_fusion"] == pytest.approx(np.max([got[n] for n in modes], axis=0))
    models = res["sets"][0]["models"]
    assert models["reference"]["threshold"] == 0.4 and models["late_fusion"]["threshold"] == 0.61
    assert models["late_fusion"]["info"]["threshold_source"].endswith("report.json")


def test_interleaved_timing_and_runtime_errors():
    calls = []

    def ok(name):
        def f():
            calls.append(name)
            return [{"backend": name}]
        return f

    def flaky():
        calls.append("flaky")
        if calls.count("flaky") > 2:
            raise RuntimeError("CUDA out of memory")
        return [{}]

    plan = L.TimingPlan(batch_sizes=(1,), warmup=1, min_iters=4, max_iters=4, budget_s=0.0)
    times, results, errors = L.time_interleaved({"a": ok("a"), "b": ok("b"), "flaky": flaky}, plan)
    assert len(times["a"]) == len(times["b"]) == 4
    # warm-ups, then round robin with the order rotated each round; flaky fails on its third call and is
    # dropped, the others go on
    assert calls == ["a", "b", "flaky"] * 2 + ["b", "flaky", "a"] + ["a", "b"] + ["b", "a"]
    assert errors == {"flaky": "RuntimeError: CUDA out of memory"} and len(times["flaky"]) == 1
    assert results["a"] == [[{"backend": "a"}]] * 4 and len(results["flaky"]) == 1
