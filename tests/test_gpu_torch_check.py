"""The PyTorch-side GPU check runs end to end on a CPU (its CUDA cases are left out there) and writes its JSON."""
from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("efficientnet_lite_pytorch")


def test_quick_run_times_every_part_on_cpu(tmp_path):
    import torch

    from crossguard.benchmarks.gpu_torch_check import main

    assert main(["--out", str(tmp_path), "--quick"]) == 0
    result = json.loads((tmp_path / "gpu_torch_check.json").read_text())
    parts = result["parts"]
    assert parts["screen"]["backends"]["cpu-fp32"]["latency"][0]["p50_ms"] > 0
    assert parts["head_train_step"]["backends"]["cpu"]["p50_ms"] > 0
    ppo = parts["ppo_step"]["backends"]["cpu"]
    assert ppo["steps_timed"] == 1 and 0 < ppo["sample_s_mean"] <= ppo["step_s_mean"]
    assert ("cuda" in parts["ppo_step"]["backends"]) == torch.cuda.is_available()
