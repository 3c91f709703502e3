"""Shared fixtures: repository paths, the optional ../shared/data folder, GPU detection."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("CROSSGUARD_SHARED_DATA", REPO.parent / "shared" / "data"))

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
    skip_shared = pytest.mark.skip(reason=f"{SHARED_DATA} is absent")
    gpu = _has_gpu()
    cuda = any(item.get_closest_marker("cuda") for item in items) and _has_torch_cuda()
    for item in items:
        if item.get_closest_marker("cuda") and not cuda:
            item.add_marker(skip_cuda)
        if "gpu" in item.keywords and not gpu:
            item.add_marker(skip_gpu)
        if "shared" in item.keywords and not SHARED_DATA.is_dir():
            item.add_marker(skip_shared)


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} is absent")
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
