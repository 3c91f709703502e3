"""Shared fixtures: repository paths, the optional data folder ($CROSSGUARD_DATA or ../shared/data), GPU
detection, a tiny composite bundle."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from crossguard.paths import find_data_root

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = find_data_root()  # None when absent: tests marked "shared" skip

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _has_gpu() -> bool:
    try:
        import onnxruntime as ort
        return "CUDAExecutionProvider" in ort.get_available_providers()
    except Exception:
        return False


def _has_torch_cuda() -> bool:
    try:
        import torch
        return torch.cuda.is_available()
    except Exception:
        return False


def pytest_collection_modifyitems(config, items):
    skip_gpu = pytest.mark.skip(reason="needs an NVIDIA GPU (CUDA/TensorRT)")
    skip_cuda = pytest.mark.skip(reason="needs PyTorch with a CUDA GPU")
    skip_shared = pytest.mark.skip(reason="no data folder ($CROSSGUARD_DATA or ../shared/data)")
    gpu = _has_gpu()
    cuda = any(item.get_closest_marker("cuda") for item in items) and _has_torch_cuda()
    for item in items:
        if item.get_closest_marker("cuda") and not cuda:
            item.add_marker(skip_cuda)
        if "gpu" in item.keywords and not gpu:
            item.add_marker(skip_gpu)
        if "shared" in item.keywords and SHARED_DATA is None:
            item.add_marker(skip_shared)


@pytest.fixture
def shared_data() -> Path:
    if SHARED_DATA is None:
        pytest.skip("no data folder ($CROSSGUARD_DATA or ../shared/data)")
    return SHARED_DATA


@pytest.fixture
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="module")
def upstream():
    """A FakeUpstream (tests/server_helpers.py) on loopback for one test module's proxies."""
    from server_helpers import FakeUpstream

    with FakeUpstream() as up:
        yield up


@pytest.fixture(scope="session")
def tiny_composite_bundle(tmp_path_factory) -> Path:
    """A tiny composite head exported fp32 (``_composite_tiny.export_tiny_composite``); skips without torch."""
    for module in ("torch", "peft", "transformers"):
        pytest.importorskip(module)
    from _composite_tiny import export_tiny_composite

    return export_tiny_composite(tmp_path_factory.mktemp("tiny_composite"))
