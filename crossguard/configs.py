"""Strict construction of config dataclasses from JSON: an unknown key is an error, never ignored."""
from __future__ import annotations

from dataclasses import fields
from typing import Any, TypeVar

T = TypeVar("T")


def from_dict_strict(cls: type[T], data: dict[str, Any], what: str, error: type[Exception] = ValueError) -> T:
    """``cls(**data)`` after checking every key is a field of ``cls``; ``error`` names the unknown keys."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise error(f"{what}: unknown key(s) {unknown}; valid: {sorted(known)}")
    return cls(**data)
