"""On-device screening: bundle loading, preprocessing, OCR, backends, ``Guard``. Imports no torch.

``from crossguard.runtime import Guard, Verdict, InputError`` works too (imported on first use).
"""
from __future__ import annotations

from typing import Any

__all__ = ["Guard", "Verdict", "InputError", "BundleError"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        import crossguard

        return getattr(crossguard, name)
    raise AttributeError(f"module 'crossguard.runtime' has no attribute {name!r}")
