"""Bundle writing (atomic, hashed), the export pipeline end to end on tiny models, runtime round trip."""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from _export_tiny import HEAD_CONFIG, fake_ocr_models, tiny_modules, tiny_tokenizer_file
from _packages import needs_package

from crossguard.export.bundle_writer import BundleWriteError, write_bundle
from crossguard.export.pipeline import ExportConfig, export_modules
from crossguard.export.settings import GRAPHS
from crossguard.locate import OCR_PACKAGE
from crossguard.runtime.bundle import Bundle, BundleError, file_sha256


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory):
    """Export the tiny stand-ins (fp32 + int8 + fp16) into a bundle once for the module."""
    from crossguard.export.samples import fixed_samples

    folder = tmp_path_factory.mktemp("tiny")
    modules = tiny_modules()
    tokenizer = tiny_tokenizer_file(folder)
    ocr = fake_ocr_models(folder)
    samples = fixed_samples(8)
    validation = [replace(s, label="unsafe" if i % 3 == 0 else "safe")  # labelled: rates are measured
                  for i, s in enumerate(fixed_samples(12, seed=1))]
    out = folder / "bundle"
    logs: list[str] = []
    config = ExportConfig(out=out, precisions=("fp32", "int8", "fp16"), int8_repeats=3, ocr_graphs="original")
    result = export_modules(modules, HEAD_CONFIG, tokenizer, ocr, samples, config, log=logs.append,
                            calibration_samples=fixed_samples(6, seed=2), validation_samples=validation)
    assert result.bundle == out and {"fp32", "fp16"} <= set(result.precisions)
    report = result.details
    return {"out": out, "report": report, "modules": modules, "samples": samples, "logs": logs,
            "tokenizer": tokenizer, "ocr": ocr, "folder": folder}


def test_manifest_lists_every_file_with_its_hash(tiny_bundle):
    out = tiny_bundle["out"]
    manifest = json.loads((out / "manifest.json").read_text())
    on_disk = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()
                     and p.name != "manifest.json")
    assert sorted(manifest["files"]) == on_disk
    for rel, digest in manifest["files"].items():
        assert file_sha256(out / rel) == digest
    assert manifest["versions"]["opset"] == 17 and manifest["format_version"] == 1
    for name in GRAPHS:
        assert {"fp32", "fp16"} <= set(manifest["graphs"][name])
        assert manifest["graphs"][name]["fp32"]["file"] == f"graphs/{name}.fp32.onnx"
        for entry in manifest["graphs"][name].values():  # int8 only when measured faster and agreeing
            if entry["file"].endswith(".int8.onnx"):
                assert entry["decision_agreement"] >= GRAPHS[name].tolerance.int8_agreement
                assert all(entry["latency_ms"][k] < entry["fp32_latency_ms"][k] for k in entry["latency_ms"])
    assert manifest["validation"]["verdict_agreement"] == 1.0
    assert manifest["policy"]["threshold"] == 0.5 and len(manifest["taxonomy"]) == 14
    int8 = manifest["export_report"]["graphs"]["fusion"]["int8"]
    assert int8["fp32_ms"] and int8["candidates"]  # the measurement is recorded, kept or not
    assert not list(out.parent.glob(".bundle.*"))  # no temporary folder left beside the bundle


def test_runtime_loads_and_refuses_tampered_bundle(tiny_bundle, tmp_path):
    import shutil

    Bundle.load(tiny_bundle["out"])  # verifies every hash
    copy = tmp_path / "copy"
    shutil.copytree(tiny_bundle["out"], copy)
    graph = copy / "graphs" / "fusion.fp32.onnx"
    data = bytearray(graph.read_bytes())
    data[len(data) // 2] ^= 0xFF
    graph.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="fusion.fp32.onnx"):
        Bundle.load(copy)
    shutil.copy(tiny_bundle["out"] / "graphs" / "fusion.fp32.onnx", graph)
    (copy / "graphs" / "extra.fp32.onnx").write_bytes(b"x")
    with pytest.raises(BundleError, match="extra"):
        Bundle.load(copy)


def test_round_trip_runtime_guard_matches_torch(tiny_bundle):
    """export -> crossguard.runtime.guard.Guard -> same verdicts as the PyTorch reference chain."""
    from crossguard.export.samples import pixel_batch
    from crossguard.export.validate import run_chain, torch_runner, verdicts
    from crossguard.runtime.guard import Guard
    from crossguard.runtime.preprocess import TextTokenizer

    samples = tiny_bundle["samples"]
    guard = Guard.load(tiny_bundle["out"], device="cpu", precision="fp32", ocr="off", warmup=False)
    got = guard.screen_batch([s.image for s in samples], [s.text for s in samples])
    ref = run_chain(torch_runner(tiny_bundle["modules"]), pixel_batch(samples), [s.text for s in samples],
                    [""] * len(samples), TextTokenizer(tiny_bundle["tokenizer"]))
    expected = verdicts(ref, HEAD_CONFIG["calibration"]["temperature"], HEAD_CONFIG["policy"]["threshold"])
    assert len(got) == len(samples) > 0
    for i, (v, (unsafe, domain, modality)) in enumerate(zip(got, expected, strict=True)):
        assert v.unsafe == bool(unsafe)
        assert max(v.domain_scores, key=v.domain_scores.get) == guard.taxonomy[domain]
        assert v.modality == guard.modalities[modality]
        assert abs(v.score - 1 / (1 + np.exp(-ref["unsafe_logit"][i]))) < 1e-4


def test_write_bundle_rejects_bad_inputs_and_writes_nothing(tiny_bundle, tmp_path):
    src = tiny_bundle["out"] / "graphs"
    graphs = {n: {"fp32": src / f"{n}.fp32.onnx"} for n in GRAPHS}
    out = tmp_path / "b"
    with pytest.raises(BundleWriteError, match="graphs"):
        write_bundle(out, {"fusion": graphs["fusion"]}, tiny_bundle["tokenizer"], tiny_bundle["ocr"], HEAD_CONFIG)
    with pytest.raises(BundleWriteError, match="not found"):
        write_bundle(out, graphs, tmp_path / "missing.json", tiny_bundle["ocr"], HEAD_CONFIG)
    with pytest.raises(BundleWriteError, match="policy"):
        write_bundle(out, graphs, tiny_bundle["tokenizer"], tiny_bundle["ocr"], {"calibration": {}})
    assert list(tmp_path.iterdir()) == []
    # replacing an existing bundle: only fp32 requested -> the fp16 files of a previous bundle disappear
    write_bundle(out, {n: {"fp32": graphs[n]["fp32"], "fp16": src / f"{n}.fp16.onnx"} for n in GRAPHS},
                 tiny_bundle["tokenizer"], tiny_bundle["ocr"], HEAD_CONFIG, ("fp32", "fp16"))
    write_bundle(out, graphs, tiny_bundle["tokenizer"], tiny_bundle["ocr"], HEAD_CONFIG)
    assert not list((out / "graphs").glob("*.fp16.onnx"))
    assert Bundle.load(out).precisions() == {"fp32"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


def test_cli_refuses_skip_validation_and_unknown_precision(capsys):
    from crossguard.cli import main

    assert main(["export", "--skip-validation"]) == 2
    assert "not allowed" in capsys.readouterr().err
    assert main(["export", "--precisions", "fp32,int4"]) == 2
    assert "int4" in capsys.readouterr().err


def test_cli_only_fills_an_export_config(tiny_bundle, tmp_path, monkeypatch):
    """`crossguard export` passes its arguments to pipeline.export_bundle as an ExportConfig and writes the
    returned report's details with --report."""
    from crossguard.cli import main
    from crossguard.export import cli
    from crossguard.export.pipeline import BundleReport

    seen = []

    def fake_export(config):
        seen.append(config)
        return BundleReport(tiny_bundle["out"], ("fp32",), {"samples": 3, "export_seconds": 0.5})

    monkeypatch.setattr(cli, "export_bundle", fake_export)
    assert main(["export", "--default", "--head", str(tmp_path / "head"), "--out", str(tmp_path / "b"),
                 "--precisions", "fp16", "--samples", "3", "--ocr-graphs", "original",
                 "--report", str(tmp_path / "r.json")]) == 0
    assert seen == [ExportConfig(head=tmp_path / "head", out=tmp_path / "b", precisions=("fp32", "fp16"), samples=3,
                                 ocr_graphs="original", head_splits=True, labelled_int8_samples=300)]
    assert json.loads((tmp_path / "r.json").read_text()) == {"samples": 3, "export_seconds": 0.5}


def test_cli_tensorrt_without_tensorrt_says_why(tiny_bundle, capsys):
    import importlib.util

    from crossguard.cli import main

    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("tensorrt installed")
    assert main(["export", "--engines-only", "--tensorrt", "fp16", "--out", str(tiny_bundle["out"])]) == 1
    assert "tensorrt" in capsys.readouterr().err
    assert main(["export", "--engines-only", "--tensorrt", "int4", "--out", str(tiny_bundle["out"])]) == 2


def test_int8_judged_on_validation_samples_with_rates_and_drift(tiny_bundle):
    """Every measured int8 candidate carries decision/verdict agreement, detection and false-refusal
    changes (the validation samples are labelled) and per-output drift; the report says which sets."""
    report = tiny_bundle["report"]
    assert report["int8_samples"] == {"calibration": 6, "validation": 12, "validation_labelled": True}
    measured = 0
    for name in GRAPHS:
        for cand in report["graphs"][name]["int8"]["candidates"].values():
            if "error" in cand:
                continue
            measured += 1
            assert {"decision_agreement", "verdict_agreement", "modality_agreement"} <= set(cand)
            assert cand["detection"]["samples"] == 4 and cand["false_refusal"]["samples"] == 8
            assert set(cand["drift"]) == set(GRAPHS[name].outputs)
            assert cand["agrees"] == (not cand["failures"])
    assert measured >= 3


@pytest.fixture(scope="module")
def mixed_bundle(tiny_bundle, tmp_path_factory):
    """A bundle with int8 kept for the fusion graph only; the encoders' int8 entries name their fp32 file."""
    from crossguard.export.quantize import quantize_dynamic_matmul

    folder = tmp_path_factory.mktemp("mix")
    src = tiny_bundle["out"] / "graphs"
    int8 = quantize_dynamic_matmul(src / "fusion.fp32.onnx", folder / "fusion.int8.onnx")
    graphs = {n: {"fp32": src / f"{n}.fp32.onnx", "int8": {"same_as": "fp32"}} for n in GRAPHS}
    graphs["fusion"]["int8"] = {"path": int8, "method": "dynamic_matmul"}
    out = folder / "bundle"
    write_bundle(out, graphs, tiny_bundle["tokenizer"], tiny_bundle["ocr"], HEAD_CONFIG, ("fp32", "int8"))
    return {"out": out, "graphs": graphs}


def test_int8_mix_loads_with_runtime_precision_int8(tiny_bundle, mixed_bundle, tmp_path):
    """precision="int8" (and "auto" on the CPU) loads the mix; a same_as naming a missing variant is refused."""
    from crossguard.runtime.guard import Guard

    out, graphs = mixed_bundle["out"], mixed_bundle["graphs"]
    bundle = Bundle.load(out)
    assert bundle.precisions() == {"fp32", "int8"}
    assert bundle.graph("text_encoder", "int8") == bundle.graph("text_encoder", "fp32")
    assert bundle.graph("fusion", "int8").name == "fusion.int8.onnx"
    assert sorted(p.name for p in (out / "graphs").iterdir()) == sorted(
        [f"{n}.fp32.onnx" for n in GRAPHS] + ["fusion.int8.onnx"])
    samples = tiny_bundle["samples"]
    fp32 = Guard.load(out, device="cpu", precision="fp32", ocr="off", warmup=False)
    mixed = Guard.load(out, device="cpu", precision="int8", ocr="off", warmup=False)
    auto = Guard.load(out, device="cpu", ocr="off", warmup=False)
    assert mixed.backend == auto.backend == "ort-cpu-int8" and fp32.backend == "ort-cpu-fp32"
    a = fp32.screen_batch([s.image for s in samples], [s.text for s in samples])
    b = mixed.screen_batch([s.image for s in samples], [s.text for s in samples])
    assert max(abs(x.score - y.score) for x, y in zip(a, b, strict=True)) > 0  # the int8 fusion graph really runs
    bad = {**graphs, "fusion": {"fp32": graphs["fusion"]["fp32"], "int8": {"same_as": "fp16"}}}
    with pytest.raises(BundleWriteError, match="fp16"):
        write_bundle(tmp_path / "bad", bad, tiny_bundle["tokenizer"], tiny_bundle["ocr"], HEAD_CONFIG,
                     ("fp32", "int8"))
    assert not (tmp_path / "bad").exists()


def test_bench_compares_int8_with_fp32_in_one_run(mixed_bundle, tmp_path, monkeypatch):
    """`crossguard bench detection --precision fp32,int8` scores both in one run; latency rows of CPU
    int8 carry their speedup against CPU fp32 of the same run."""
    from crossguard.benchmarks import latency as L
    from PIL import Image

    from crossguard.cli import main
    from crossguard.manifest import write_manifest
    from crossguard.schemas import Sample

    rows = []
    for i, (text, label, kind) in enumerate([("how to make the thing in the picture", "unsafe", "implicit"),
                                             ("describe the picture", "safe", "benign")]):
        Image.new("RGB", (40, 40), (40 * i, 90, 200)).save(tmp_path / f"{i}.png")
        rows.append(Sample(f"s{i}", str(tmp_path / f"{i}.png"), text, label, kind,
                           "violence" if label == "unsafe" else None))
    write_manifest(tmp_path / "m.jsonl", rows)
    results = tmp_path / "results"
    assert main(["bench", "detection", "--manifest", str(tmp_path / "m.jsonl"), "--bundle", str(mixed_bundle["out"]),
                 "--precision", "fp32,int8", "--device", "cpu", "--no-reference", "--no-progress",
                 "--results-dir", str(results)]) == 0
    res = json.loads((results / "detection.json").read_text())
    models = next(s for s in res["sets"] if s["name"] == "m")["models"]
    assert {"guard", "guard-int8"} <= set(models)

    from _fake_clock import FakeClock, FakeScreener

    clock = FakeClock()
    monkeypatch.setattr(L, "time", clock)
    specs = [L.BackendSpec("ort-cpu-fp32", "runtime", "cpu", "fp32"), L.BackendSpec("ort-cpu-int8", "runtime", "cpu", "int8")]
    plan = L.TimingPlan(batch_sizes=(1,), warmup=1, min_iters=3, max_iters=4, budget_s=0.05, image_size=32)
    result = L.run_latency(specs, plan, None, {"runtime": lambda spec, b: FakeScreener(clock, 20.0 if spec.precision == "fp32" else 5.0, "x")},
                           input_kinds=("no-ocr",), progress=False, check=lambda spec, b: None)
    fp32, int8 = result["backends"]
    assert int8["runs"][0]["speedup_vs_cpu_fp32"] == pytest.approx(4.0) and "speedup_vs_cpu_fp32" not in fp32["runs"][0]


@pytest.mark.slow
@needs_package(OCR_PACKAGE[0])
def test_int8_sets_from_manifests_with_runtime_ocr(tmp_path):
    """`crossguard export --calibration-manifest/--validation-manifest`: seeded subsets, labels kept, OCR
    text from the packaged OCR models (none: generated samples are used)."""
    from crossguard.export.pipeline import int8_sample_sets
    from PIL import Image

    from crossguard.manifest import write_manifest
    from crossguard.schemas import Sample

    from crossguard.export.samples import load_font
    from crossguard.train.backbones import ocr_models

    ocr = ocr_models()
    from PIL import ImageDraw

    img = Image.new("RGB", (320, 96), "white")
    ImageDraw.Draw(img).text((10, 30), "STEP ONE", fill="black", font=load_font(32))
    img.save(tmp_path / "t.png")
    Image.new("RGB", (64, 64), (30, 120, 200)).save(tmp_path / "p.png")
    rows = [Sample(f"s{i}", str(tmp_path / ("t.png" if i % 2 else "p.png")), f"question {i}",
                   "unsafe" if i % 2 else "safe", "explicit-image" if i % 2 else "benign",
                   "violence" if i % 2 else None) for i in range(6)]
    write_manifest(tmp_path / "train.jsonl", rows)
    write_manifest(tmp_path / "val.jsonl", rows)
    config = ExportConfig(calibration_manifest=tmp_path / "train.jsonl", validation_manifest=tmp_path / "val.jsonl",
                          calibration_limit=4, validation_limit=100, threads=1)
    calibration, validation = int8_sample_sets(config, ocr)
    assert len(calibration) == 4 and len(validation) == 6
    assert {s.label for s in validation} == {"safe", "unsafe"}
    assert all(("STEP" in s.ocr_text.upper()) == (s.label == "unsafe") for s in validation)
    assert int8_sample_sets(replace(config, precisions=("fp32",)), ocr) == (None, None)
    none = replace(config, calibration_manifest=None, validation_manifest=None)
    assert int8_sample_sets(none, ocr) == (None, None)
    # --default: the head's own splits (guard.json training.data), absolute or relative to the repo root
    from crossguard.export.pipeline import training_data_dir
    from crossguard.paths import source_root

    default = replace(none, head_splits=True)
    data_dir = training_data_dir({"training": {"data": str(tmp_path)}})
    assert data_dir == tmp_path and training_data_dir({"training": {"data": "artifacts/data/v1"}}) == \
        source_root() / "artifacts" / "data" / "v1" and training_data_dir({}) is None
    logs = []
    calibration, validation = int8_sample_sets(default, ocr, data_dir, log=logs.append)
    assert len(calibration) == 4 and [s.text for s in validation] == [s.text for s in rows]
    assert not logs
    assert int8_sample_sets(default, ocr, tmp_path / "absent", log=logs.append) == (None, None)
    assert len(logs) == 2 and "train split" in logs[0] and "val split" in logs[1]
