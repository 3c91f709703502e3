"""TensorRT helpers: engine folder identity, staleness rule, ORT TensorRT EP options, the GPU script's CPU
dry run; real engine builds carry the gpu marker and skip without a GPU and tensorrt."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _export_tiny import HEAD_CONFIG, fake_ocr_models, tiny_modules, tiny_tokenizer_file

from crossguard.export import tensorrt as trt_export

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    from crossguard.export.pipeline import ExportConfig, export_modules
    from crossguard.export.samples import fixed_samples

    folder = tmp_path_factory.mktemp("trt")
    out = folder / "bundle"
    export_modules(tiny_modules(), HEAD_CONFIG, tiny_tokenizer_file(folder), fake_ocr_models(folder), fixed_samples(6),
                   ExportConfig(out=out, precisions=("fp32", "fp16"), ocr_graphs="original"), log=lambda s: None)
    return out


def test_identity_folder_and_staleness():
    ident = trt_export.GpuIdentity("NVIDIA H100 80GB HBM3", "9.0", "10.13.0")
    assert ident.folder == "nvidia_h100_80gb_hbm3_sm90_trt10.13.0"
    meta = {**ident.to_dict(), "engines": {"fusion.fp16": {"onnx_sha256": "abc"}}}
    assert trt_export.engine_is_current(meta, ident, "fusion.fp16", "abc") == (True, "current")
    ok, why = trt_export.engine_is_current(meta, ident, "fusion.fp16", "def")
    assert not ok and "changed" in why
    other = trt_export.GpuIdentity("Orin", "8.7", "10.3.0")
    ok, why = trt_export.engine_is_current(meta, other, "fusion.fp16", "abc")
    assert not ok and "gpu_name" in why
    ok, why = trt_export.engine_is_current(meta, trt_export.GpuIdentity(ident.name, "9.0", "10.14.0"),
                                           "fusion.fp16", "abc")
    assert not ok and "tensorrt" in why


def test_profiles_and_ort_trt_options(bundle, tmp_path):
    text = bundle / "graphs" / "text_encoder.fp32.onnx"
    profiles = trt_export.input_profiles(text, max_batch=64)
    assert profiles["input_ids"] == ((1, 1), (16, 32), (64, 64))
    image = trt_export.input_profiles(bundle / "graphs" / "image_encoder.fp32.onnx", max_batch=8)
    assert image["pixel_values"] == ((1, 3, 224, 224), (8, 3, 224, 224), (8, 3, 224, 224))
    providers = trt_export.ort_tensorrt_providers(text, tmp_path / "cache", fp16=True)
    name, opts = providers[0]
    assert name == "TensorrtExecutionProvider" and opts["trt_engine_cache_enable"]
    assert opts["trt_engine_cache_path"] == str(tmp_path / "cache")
    assert "input_ids:64x64" in opts["trt_profile_max_shapes"]


def test_load_or_build_needs_tensorrt_or_says_why(bundle):
    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("tensorrt installed: covered by the gpu test")
    with pytest.raises(trt_export.TensorRTUnavailable, match="tensorrt"):
        trt_export.load_or_build(bundle, "fusion", "fp16")


def test_gpu_script_cpu_dry_run(bundle, tmp_path):
    script = REPO / "tools" / "gpu" / "gpu_export_check.py"
    samples = tmp_path / "samples.npz"
    subprocess.run([sys.executable, str(script), "write-samples", "--bundle", str(bundle), "--out", str(samples),
                    "-n", "4"], check=True, capture_output=True, text=True, timeout=120)
    with np.load(samples) as z:
        assert "fusion:text_tokens" in z.files and z["image_encoder:pixel_values"].shape[0] == 4
    res = subprocess.run([sys.executable, str(script), "--bundle", str(bundle), "--out", str(tmp_path / "out"),
                          "--samples", str(samples), "--cpu-dry-run", "--batches", "1,4", "--repeats", "3",
                          "--seconds-per-case", "0.5"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    report = json.loads((tmp_path / "out" / "gpu_export_check.json").read_text())
    fusion = report["graphs"]["fusion"]
    assert fusion["ort-cpu"]["parity"]["verdict_agreement"] == 1.0
    assert [t["batch"] for t in fusion["ort-cpu"]["latency"]] == [1, 4]
    assert fusion["ort-cuda-fp16"]["unavailable"].startswith("skipped")
    assert "profiles" in fusion["trt-fp16"]["unavailable"]


@pytest.mark.gpu
def test_tensorrt_engine_parity_on_gpu(bundle):
    pytest.importorskip("tensorrt")
    engine, how = trt_export.load_or_build(bundle, "fusion", "fp16", max_batch=8)
    assert how.startswith("built")
    assert trt_export.load_or_build(bundle, "fusion", "fp16", max_batch=8)[1] == "reused"
    from crossguard.export.settings import FUSION
    from crossguard.export.validate import onnx_runner, onnx_session, verdict_agreement

    feeds = FUSION.random_inputs(batch=4, seq=9)
    ref = onnx_runner({"fusion": onnx_session(bundle / "graphs" / "fusion.fp32.onnx")})("fusion", feeds)
    got = trt_export.TrtRunner(engine).run(feeds)
    assert max(float(np.max(np.abs(got[k] - ref[k]))) for k in ref) < 0.1
    assert verdict_agreement(ref, got) == 1.0
