"""What every benchmark records beside its numbers, and how it writes figures: the machine (CPU, versions,
providers, GPU), the process's memory, the bundle's hash, atomic PNG writes."""
from __future__ import annotations

import hashlib
import os
import platform
import resource
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from crossguard.fileio import atomic_path
from crossguard.info import gpu_names
from crossguard.locate import package_version


def rss_mb() -> float:
    """Current resident set size of this process (MB)."""
    try:
        import psutil
        return psutil.Process().memory_info().rss / 1e6
    except ImportError:
        pass
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024 / 1e6
    except OSError:
        pass
    return float("nan")


def peak_rss_mb() -> float:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1e3 if sys.platform != "darwin" else kb / 1e6


def gpu_memory_mb() -> float | None:
    """GPU memory held by this process (nvidia-smi), None without an NVIDIA GPU."""
    if not shutil.which("nvidia-smi"):
        return None
    try:
        out = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    total = 0.0
    for line in out.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 2 and parts[0] == str(os.getpid()):
            try:
                total += float(parts[1])
            except ValueError:
                pass
    return total


def machine_info() -> dict[str, Any]:
    """CPU, OS, Python, library versions, ONNX Runtime providers, GPU name."""
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    info: dict[str, Any] = {"platform": platform.platform(), "machine": platform.machine(), "cpu": cpu,
                            "cpu_count": os.cpu_count(), "python": platform.python_version(),
                            "versions": {d: package_version(d) for d in ("crossguard-edge", "onnxruntime", "onnxruntime-gpu",
                                                                  "torch", "numpy", "tensorrt", "onnx")}}
    try:
        import onnxruntime as ort
        info["ort_providers"] = ort.get_available_providers()
        info["onnxruntime_imported"] = ort.__version__  # the module in use (a dist's metadata can be another)
    except ImportError:
        info["ort_providers"] = []
    gpus = gpu_names()
    if gpus:
        info["gpu"] = "\n".join(gpus)
    return info


def bundle_hash(bundle: str | os.PathLike | None) -> str | None:
    """sha256 of the bundle's manifest.json (which lists the sha256 of every other file)."""
    if bundle is None:
        return None
    path = Path(bundle) / "manifest.json"
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def save_figure(fig, path: str | os.PathLike) -> Path:
    """Atomic PNG write of a matplotlib figure."""
    with atomic_path(path, suffix=".tmp.png") as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
    return Path(path)
