"""Temperature scaling and threshold selection at a target false-refusal rate (ECE: ``crossguard.metrics``).

The decision itself (threshold, per-domain thresholds, disabled domains) is ``crossguard.runtime.policy``'s
``apply_policy``, shared with the runtime.
"""
from __future__ import annotations

import numpy as np

from crossguard.metrics import expected_calibration_error
from crossguard.runtime.policy import apply_policy, calibrated_score, sigmoid  # noqa: F401 (re-exported)


def _nll(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    p = np.clip(sigmoid(logits / temperature), 1e-12, 1 - 1e-12)
    return float(-np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p)))


def fit_temperature(logits: np.ndarray, labels: np.ndarray, lo: float = 0.05, hi: float = 20.0,
                    steps: int = 400) -> float:
    """Temperature minimising the validation negative log-likelihood: a log-spaced grid search then a
    golden-section refinement (deterministic, no optimiser state)."""
    logits = np.asarray(logits, dtype=np.float64).reshape(-1)
    labels = np.asarray(labels, dtype=np.float64).reshape(-1)
    if logits.shape != labels.shape or logits.size == 0:
        raise ValueError("logits and labels must be non-empty and the same length")
    grid = np.exp(np.linspace(np.log(lo), np.log(hi), steps))
    losses = [_nll(logits, labels, t) for t in grid]
    i = int(np.argmin(losses))
    a, b = grid[max(i - 1, 0)], grid[min(i + 1, steps - 1)]
    g = (np.sqrt(5) - 1) / 2
    for _ in range(40):
        c, d = b - g * (b - a), a + g * (b - a)
        if _nll(logits, labels, c) < _nll(logits, labels, d):
            b = d
        else:
            a = c
    return float((a + b) / 2)


def select_threshold(safe_scores: np.ndarray, target_frr: float = 0.02, weights: np.ndarray | None = None) -> float:
    """The smallest threshold whose false-refusal rate (fraction of safe scores >= threshold, each score counted
    with its ``weights`` share when given) is at most ``target_frr``. Candidates are the safe scores themselves
    (just above each) and 1.0."""
    scores = np.asarray(safe_scores, dtype=np.float64).reshape(-1)
    if scores.size == 0:
        raise ValueError("no safe (benign) scores to choose a threshold from")
    if not 0.0 <= target_frr < 1.0:
        raise ValueError(f"target false-refusal rate must be in [0, 1), got {target_frr}")
    w = np.ones_like(scores) if weights is None else np.asarray(weights, dtype=np.float64).reshape(-1)
    order = np.argsort(-scores, kind="stable")
    s, refused = scores[order], np.cumsum(w[order]) / w.sum()  # refused[k]: share refused at threshold s[k]
    over = np.flatnonzero(refused > target_frr + 1e-9)
    k = int(over[0]) if over.size else s.size - 1  # the first score whose refusal breaks the target
    return float(min(1.0, np.nextafter(s[k], np.inf)))


def group_weights(groups: list[str]) -> np.ndarray:
    """Weights that give every group the same total (1 / number of groups), split evenly among its rows."""
    counts: dict[str, int] = {}
    for g in groups:
        counts[g] = counts.get(g, 0) + 1
    return np.asarray([1.0 / (len(counts) * counts[g]) for g in groups])


def calibrate(logits: np.ndarray, labels: np.ndarray, safe_mask: np.ndarray, target_frr: float = 0.02,
              bins: int = 15, safe_weights: np.ndarray | None = None) -> tuple[dict, float]:
    """Fit the temperature on validation logits and pick the threshold. Returns (calibration dict, threshold).

    ``safe_mask`` marks the benign and benign-hard samples whose false-refusal rate is bounded; ``safe_weights``
    (one per safe sample, e.g. ``group_weights``) weigh them in that rate.
    """
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.float64)
    temperature = fit_temperature(logits, labels)
    before = expected_calibration_error(labels, sigmoid(logits), bins)
    scores = calibrated_score(logits, temperature)
    after = expected_calibration_error(labels, scores, bins)
    threshold = select_threshold(scores[np.asarray(safe_mask, bool)], target_frr, safe_weights)
    calibration = {"method": "temperature", "temperature": temperature, "ece_before": before, "ece_after": after,
                   "ece_bins": bins, "fitted_on": int(logits.size)}
    return calibration, threshold
