"""The GPU scripts on a composite bundle, dry-run on the CPU (tools/gpu): gpu_export_check.py records its samples through
the composite chain and checks all four graphs, TensorRT profiles reach the composite sequence's length, and the
shell scripts carry the concepts graph and parse."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def test_gpu_export_check_dry_run_on_a_composite_bundle(tiny_composite_bundle, tmp_path):
    """write-samples runs the composite chain; the dry run covers all four graphs and profiles the text encoder
    up to the composite sequence's length (a fusion bundle's 64 would refuse every composite sequence)."""
    from crossguard.export import tensorrt as trt_export

    script = REPO / "tools" / "gpu" / "gpu_export_check.py"
    samples = tmp_path / "samples.npz"
    made = subprocess.run([sys.executable, str(script), "write-samples", "--bundle", str(tiny_composite_bundle), "--out",
                           str(samples), "-n", "3"], capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr[-2000:]
    manifest = json.loads((tiny_composite_bundle / "manifest.json").read_text())
    max_seq = trt_export.bundle_max_seq(manifest)
    assert max_seq == manifest["tokenizer"]["max_tokens"] > 64
    with np.load(samples) as z:
        assert {"concepts:image_embedding", "text_encoder:input_ids", "fusion:text_embedding"} <= set(z.files)
        assert z["fusion:text_embedding"].shape == (3, 384)
    res = subprocess.run([sys.executable, str(script), "--bundle", str(tiny_composite_bundle), "--out", str(tmp_path / "out"),
                          "--samples", str(samples), "--cpu-dry-run", "--batches", "1,2", "--repeats", "2",
                          "--seconds-per-case", "0.2", "--backends", "ort-cpu,ort-cuda-fp32,trt-fp16"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    report = json.loads((tmp_path / "out" / "gpu_export_check.json").read_text())
    assert list(report["graphs"]) == ["image_encoder", "concepts", "text_encoder", "fusion"]
    assert report["graphs"]["fusion"]["ort-cpu"]["parity"]["verdict_agreement"] == 1.0
    assert report["graphs"]["concepts"]["ort-cuda-fp32"]["unavailable"].startswith("skipped")
    assert f"(64, {max_seq})" in report["graphs"]["text_encoder"]["trt-fp16"]["unavailable"]
    profiles = trt_export.input_profiles(tiny_composite_bundle / manifest["graphs"]["text_encoder"]["fp32"]["file"],
                                         max_seq=max_seq)
    assert profiles["input_ids"][2] == (64, max_seq)
    assert trt_export.bundle_max_seq({"tokenizer": {}}) == 64


def test_gpu_scripts_name_no_fixed_part_count_and_carry_the_concepts_graph():
    runtime_check = (REPO / "tools" / "gpu" / "gpu_runtime_check.sh").read_text()
    checks = (REPO / "tools" / "gpu" / "gpu_checks.sh").read_text()
    assert "part.04" not in runtime_check and "CG_HEAD" in runtime_check
    assert "concepts.*.onnx" in checks
    for script in ("gpu_runtime_check.sh", "gpu_checks.sh"):
        done = subprocess.run(["bash", "-n", str(REPO / "tools" / "gpu" / script)], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
