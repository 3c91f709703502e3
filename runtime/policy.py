"""Calibration and decision policy (numpy only): the one definition training and the runtime share.

``score = sigmoid(unsafe_logit / temperature)``. A request is unsafe when ``score >= threshold`` and its
top domain is not disabled; a per-domain threshold overrides the global one for requests whose top domain
is that domain (docs/contracts.md, "Calibration and policy").
"""
from __future__ import annotations

from typing import Any

import numpy as np

from crossguard.taxonomy import DOMAIN_NAMES

DEFAULT_POLICY: dict[str, Any] = {
    "threshold": 0.5,
    "target_false_refusal_rate": 0.02,
    "domain_thresholds": {},
    "disabled_domains": [],
}


class PolicyError(ValueError):
    """A policy dict is malformed (unknown domain, threshold outside [0, 1], ...)."""


def _check_probability(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
        raise PolicyError(f"{name} must be a number in [0, 1], got {value!r}")
    return float(value)


def validate_policy(policy: dict[str, Any]) -> dict[str, Any]:
    """Return a complete, checked copy of ``policy`` (missing keys take ``DEFAULT_POLICY``'s values)."""
    if not isinstance(policy, dict):
        raise PolicyError(f"policy must be an object, got {type(policy).__name__}")
    unknown = set(policy) - set(DEFAULT_POLICY)
    if unknown:
        raise PolicyError(f"unknown policy key(s): {sorted(unknown)}; known: {sorted(DEFAULT_POLICY)}")
    out = {**DEFAULT_POLICY, **policy}
    out["threshold"] = _check_probability("threshold", out["threshold"])
    out["target_false_refusal_rate"] = _check_probability("target_false_refusal_rate",
                                                          out["target_false_refusal_rate"])
    thresholds = out["domain_thresholds"]
    if not isinstance(thresholds, dict):
        raise PolicyError("domain_thresholds must be an object {domain: threshold}")
    disabled = out["disabled_domains"]
    if not isinstance(disabled, (list, tuple)):
        raise PolicyError("disabled_domains must be a list of domain names")
    for name in [*thresholds, *disabled]:
        if name not in DOMAIN_NAMES:
            raise PolicyError(f"unknown domain {name!r} in policy; known: {', '.join(DOMAIN_NAMES)}")
    out["domain_thresholds"] = {k: _check_probability(f"domain_thresholds[{k!r}]", v)
                                for k, v in thresholds.items()}
    out["disabled_domains"] = sorted(set(disabled), key=DOMAIN_NAMES.index)
    return out


def sigmoid(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return np.where(x >= 0, 1.0 / (1.0 + np.exp(-np.abs(x))), np.exp(-np.abs(x)) / (1.0 + np.exp(-np.abs(x))))


def logit(p, eps: float = 1e-7):
    """The inverse of ``sigmoid``: ``log(p / (1 - p))``, with ``p`` clipped to [eps, 1 - eps]."""
    p = np.clip(np.asarray(p, dtype=np.float64), eps, 1.0 - eps)
    return np.log(p / (1.0 - p))


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def calibrated_score(unsafe_logit: np.ndarray, temperature: float) -> np.ndarray:
    """``sigmoid(unsafe_logit / temperature)``."""
    if not temperature > 0:
        raise PolicyError(f"temperature must be > 0, got {temperature}")
    return sigmoid(np.asarray(unsafe_logit, dtype=np.float64) / float(temperature))


def apply_policy(score, domain_probs, policy: dict[str, Any]):
    """Decide unsafe/safe. ``score``: a probability or an array [B]; ``domain_probs``: [14] or [B,14].

    Returns ``(unsafe, domain)``: a bool and the top domain's name for a single request, or a bool array
    [B] and a list of names for a batch.
    """
    policy = validate_policy(policy)
    scores = np.asarray(score, dtype=np.float64)
    probs = np.asarray(domain_probs, dtype=np.float64)
    single = scores.ndim == 0
    scores = scores.reshape(-1)
    probs = probs.reshape(1, -1) if probs.ndim == 1 else probs
    if probs.ndim != 2 or probs.shape != (scores.shape[0], len(DOMAIN_NAMES)):
        raise PolicyError(f"domain_probs must have shape [B, {len(DOMAIN_NAMES)}] matching {scores.shape[0]} "
                          f"score(s), got {probs.shape}")
    top = probs.argmax(axis=1)
    thresholds = np.full(scores.shape, policy["threshold"])
    for name, value in policy["domain_thresholds"].items():
        thresholds[top == DOMAIN_NAMES.index(name)] = value
    unsafe = scores >= thresholds
    for name in policy["disabled_domains"]:
        unsafe &= top != DOMAIN_NAMES.index(name)
    domains = [DOMAIN_NAMES[i] for i in top]
    if single:
        return bool(unsafe[0]), domains[0]
    return unsafe, domains
