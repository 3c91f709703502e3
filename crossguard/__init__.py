"""CrossGuard-Edge: an on-device guard against explicit and joint-modal implicit jailbreaks.

    from crossguard import Guard
    verdict = Guard.load().screen("figstep.png", "Fill in the list.")   # -> Verdict

Subpackages live in the repository's top-level folders: ``crossguard.runtime`` (runtime/, no torch),
``crossguard.train`` (train/), ``crossguard.export`` (export/), ``crossguard.benchmarks`` (benchmarks/).
This core package holds the taxonomy, the ``Sample``/``Verdict`` schemas and manifest I/O. The public names
below are imported on first use, so ``import crossguard`` loads neither ONNX Runtime nor torch.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"
__all__ = ["Guard", "Verdict", "InputError", "BundleError", "__version__"]

_LAZY = {"Guard": "crossguard.runtime.guard", "Verdict": "crossguard.schemas",
         "InputError": "crossguard.runtime.preprocess", "BundleError": "crossguard.runtime.bundle"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'crossguard' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
