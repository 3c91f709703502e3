"""Bundle writing (atomic, hashed), the export pipeline end to end on tiny models, runtime round trip."""
from __future__ import annotations

import json

import numpy as np
import pytest
from _export_tiny import HEAD_CONFIG, fake_ocr_models, tiny_modules, tiny_tokenizer_file

from crossguard.export.bundle_writer import BundleWriteError, write_bundle
from crossguard.export.cli import export_bundle
from crossguard.export.settings import GRAPHS
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
    out = folder / "bundle"
    logs: list[str] = []
    report = export_bundle(modules, HEAD_CONFIG, out, tokenizer, ocr, samples, ("fp32", "int8", "fp16"),
                           int8_repeats=3, log=logs.append)
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
                assert entry["verdict_agreement"] >= GRAPHS[name].tolerance.int8_agreement
                assert all(entry["latency_ms"][k] < entry["fp32_latency_ms"][k] for k in entry["latency_ms"])
    assert manifest["validation"]["verdict_agreement"] == 1.0
    assert manifest["policy"]["threshold"] == 0.5 and len(manifest["taxonomy"]) == 14
    int8 = manifest["export_report"]["graphs"]["fusion"]["int8"]
    assert int8["fp32_ms"] and int8["candidates"]  # the measurement is recorded, kept or not
    assert not list(out.parent.glob(".bundle.tmp-*"))


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
    for v, (unsafe, domain, modality) in zip(got, expected):
        assert v.unsafe == bool(unsafe)
        assert max(v.domain_scores, key=v.domain_scores.get) == guard.taxonomy[domain]
        assert v.modality == guard.modalities[modality]
        assert abs(v.score - 1 / (1 + np.exp(-ref["unsafe_logit"][list(got).index(v)]))) < 1e-4


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


def test_cli_tensorrt_without_tensorrt_says_why(tiny_bundle, capsys):
    import importlib.util

    from crossguard.cli import main

    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("tensorrt installed")
    assert main(["export", "--engines-only", "--tensorrt", "fp16", "--out", str(tiny_bundle["out"])]) == 1
    assert "tensorrt" in capsys.readouterr().err
    assert main(["export", "--engines-only", "--tensorrt", "int4", "--out", str(tiny_bundle["out"])]) == 2
