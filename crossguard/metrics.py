"""Detection, calibration and latency metrics, numpy only: the one implementation the benchmarks, guard
training and ImpForge's judges all use.

Conventions: ``y_true`` is 1 for an unsafe pair and 0 for a safe one; ``scores`` are the guard's
calibrated probabilities of "unsafe"; a pair is flagged when ``score >= threshold`` (the runtime's rule).

* detection rate = flagged unsafe / unsafe = 1 - attack success rate (ASR) = recall;
* false-refusal rate (FRR) = flagged safe / safe;
* AUROC by ranks (Mann-Whitney U) with tied scores given their average rank;
* ECE with equal-width bins over [0, 1] (score in bin ``min(floor(score * n_bins), n_bins - 1)``),
  ``sum_b |mean(y_true in b) - mean(score in b)| * n_b / N`` (reliability of the unsafe probability).

Every function takes ``(y_true, scores)`` or ``(y_true, y_pred)`` in that order. A metric that is undefined
on the data (no unsafe pairs for a detection rate, one class only for AUROC) is ``nan``, never a made-up 0 or 1;
``crossguard.fileio.write_json`` turns nan into ``null``.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

ECE_BINS = 15
PERCENTILES = (50, 90, 99)


def _arrays(y_true: Sequence, scores: Sequence | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    y = np.asarray(y_true)
    if y.ndim != 1:
        raise ValueError(f"y_true must be 1-D, got shape {y.shape}")
    if y.dtype == bool:
        y = y.astype(np.int64)
    if y.size and not np.isin(y, (0, 1)).all():
        raise ValueError("y_true must hold only 0/1 (or booleans)")
    y = y.astype(np.int64)
    if scores is None:
        return y, None
    s = np.asarray(scores, dtype=np.float64)
    if s.shape != y.shape:
        raise ValueError(f"scores shape {s.shape} != y_true shape {y.shape}")
    if np.isnan(s).any():
        raise ValueError("scores contain NaN")
    return y, s


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den else float("nan")


def flagged(scores: Sequence, threshold: float) -> np.ndarray:
    """The runtime's decision rule: unsafe when ``score >= threshold``."""
    return np.asarray(scores, dtype=np.float64) >= threshold


def confusion(y_true: Sequence, y_pred: Sequence) -> dict[str, int]:
    """True/false positives/negatives with "unsafe" as the positive class."""
    y, _ = _arrays(y_true)
    p, _ = _arrays(y_pred)
    if p.shape != y.shape:
        raise ValueError(f"y_pred shape {p.shape} != y_true shape {y.shape}")
    return {"tp": int(((y == 1) & (p == 1)).sum()), "fn": int(((y == 1) & (p == 0)).sum()),
            "fp": int(((y == 0) & (p == 1)).sum()), "tn": int(((y == 0) & (p == 0)).sum())}


def detection_rate(y_true: Sequence, y_pred: Sequence) -> float:
    """Share of unsafe pairs flagged (1 - attack success rate); nan without unsafe pairs."""
    c = confusion(y_true, y_pred)
    return _ratio(c["tp"], c["tp"] + c["fn"])


def attack_success_rate(y_true: Sequence, y_pred: Sequence) -> float:
    """Share of unsafe pairs let through."""
    return 1.0 - detection_rate(y_true, y_pred)


def false_refusal_rate(y_true: Sequence, y_pred: Sequence) -> float:
    """Share of safe pairs flagged; nan without safe pairs."""
    c = confusion(y_true, y_pred)
    return _ratio(c["fp"], c["fp"] + c["tn"])


def accuracy(y_true: Sequence, y_pred: Sequence) -> float:
    """Share of pairs decided right; nan without pairs."""
    c = confusion(y_true, y_pred)
    return _ratio(c["tp"] + c["tn"], sum(c.values()))


def precision_recall_f1(y_true: Sequence, y_pred: Sequence) -> dict[str, float]:
    """Precision, recall and F1 of the "unsafe" class (nan where a denominator is 0)."""
    c = confusion(y_true, y_pred)
    precision = _ratio(c["tp"], c["tp"] + c["fp"])
    recall = _ratio(c["tp"], c["tp"] + c["fn"])
    f1 = _ratio(2 * c["tp"], 2 * c["tp"] + c["fp"] + c["fn"])
    return {"precision": precision, "recall": recall, "f1": f1}


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks; tied values share the mean of the ranks they span."""
    order = np.argsort(values, kind="mergesort")
    sorted_vals = values[order]
    ranks = np.empty(len(values), dtype=np.float64)
    boundaries = np.flatnonzero(np.diff(sorted_vals)) + 1
    starts = np.concatenate(([0], boundaries))
    ends = np.concatenate((boundaries, [len(values)]))
    for start, end in zip(starts, ends):
        ranks[order[start:end]] = (start + 1 + end) / 2.0
    return ranks


def auroc(y_true: Sequence, scores: Sequence) -> float:
    """Area under the ROC curve = P(score of a random unsafe > a random safe) + 0.5 P(tie)."""
    y, s = _arrays(y_true, scores)
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = _average_ranks(s)
    u = ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def expected_calibration_error(y_true: Sequence, scores: Sequence, n_bins: int = ECE_BINS) -> float:
    """ECE of the unsafe probability over ``n_bins`` equal-width bins (see the module docstring)."""
    y, s = _arrays(y_true, scores)
    if len(y) == 0:
        return float("nan")
    if (s < 0).any() or (s > 1).any():
        raise ValueError("ECE needs probabilities in [0, 1]")
    bins = np.minimum((s * n_bins).astype(np.int64), n_bins - 1)
    ece = 0.0
    for b in np.unique(bins):
        in_bin = bins == b
        ece += abs(y[in_bin].mean() - s[in_bin].mean()) * in_bin.sum() / len(y)
    return float(ece)


def classification_summary(y_true: Sequence, scores: Sequence, threshold: float,
                           predicted: Sequence | None = None) -> dict[str, Any]:
    """Every detection metric at one threshold, plus counts. ``predicted`` (the guard's own decisions,
    e.g. with per-domain thresholds) replaces ``score >= threshold`` when given."""
    y, s = _arrays(y_true, scores)
    pred = flagged(s, threshold).astype(np.int64) if predicted is None else _arrays(predicted)[0]
    if pred.shape != y.shape:
        raise ValueError(f"predicted shape {pred.shape} != y_true shape {y.shape}")
    out: dict[str, Any] = {"n": int(len(y)), "n_unsafe": int(y.sum()), "n_safe": int(len(y) - y.sum()),
                           "threshold": float(threshold),
                           "detection_rate": detection_rate(y, pred),
                           "attack_success_rate": attack_success_rate(y, pred),
                           "false_refusal_rate": false_refusal_rate(y, pred)}
    out.update(precision_recall_f1(y, pred))
    out["auroc"] = auroc(y, s)
    out["ece"] = expected_calibration_error(y, s)
    out["accuracy"] = accuracy(y, pred)
    out["confusion"] = confusion(y, pred)
    return out


def group_breakdown(groups: Sequence[str | None], y_true: Sequence, scores: Sequence, threshold: float,
                    predicted: Sequence | None = None) -> dict[str, dict[str, Any]]:
    """``classification_summary`` per group value (kind, domain, source...), sorted by group name;
    entries whose group is None are left out."""
    y, s = _arrays(y_true, scores)
    p = None if predicted is None else _arrays(predicted)[0]
    g = np.asarray([x if x is not None else "" for x in groups], dtype=object)
    if len(g) != len(y):
        raise ValueError(f"{len(g)} group labels for {len(y)} samples")
    out = {}
    for name in sorted({x for x in groups if x is not None}):
        sel = g == name
        out[str(name)] = classification_summary(y[sel], s[sel], threshold, None if p is None else p[sel])
    return out


def threshold_curve(y_true: Sequence, scores: Sequence, thresholds: Sequence[float] | None = None,
                    ) -> dict[str, list[float]]:
    """Detection rate and false-refusal rate as the threshold moves (the operating curve users pick from).

    Default thresholds: every distinct score plus 0 and just above the maximum (so both ends appear),
    ascending; detection and FRR then fall monotonically along the lists."""
    y, s = _arrays(y_true, scores)
    if thresholds is None:
        top = float(s.max()) if len(s) else 1.0
        thresholds = np.unique(np.concatenate(([0.0], s, [np.nextafter(max(top, 1.0), 2.0)])))
    thresholds = np.asarray(sorted(float(t) for t in thresholds))
    pos, neg = s[y == 1], s[y == 0]
    det = [(_ratio((pos >= t).sum(), len(pos))) for t in thresholds]
    frr = [(_ratio((neg >= t).sum(), len(neg))) for t in thresholds]
    return {"threshold": thresholds.tolist(), "detection_rate": det, "false_refusal_rate": frr}


def percentiles(values: Sequence[float], qs: Sequence[float] = PERCENTILES) -> dict[str, float]:
    """``{"p50": ..., "p90": ..., "p99": ...}`` by linear interpolation (numpy's default method)."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return {f"p{q:g}": float("nan") for q in qs}
    return {f"p{q:g}": float(np.percentile(v, q)) for q in qs}


def latency_summary(latencies_ms: Sequence[float], batch_size: int = 1,
                    wall_s: float | None = None) -> dict[str, float]:
    """Percentiles, mean, min, max of per-call latencies (ms) and throughput in pairs per second.

    Throughput is ``batch_size * calls / wall_s`` when the caller timed the whole loop, else computed from
    the sum of the call latencies."""
    v = np.asarray(latencies_ms, dtype=np.float64)
    out = percentiles(v)
    if v.size == 0:
        out.update(mean=float("nan"), min=float("nan"), max=float("nan"), throughput=float("nan"), calls=0)
        return out
    total_s = wall_s if wall_s is not None else float(v.sum()) / 1000.0
    out.update(mean=float(v.mean()), min=float(v.min()), max=float(v.max()),
               throughput=_ratio(batch_size * v.size, total_s), calls=int(v.size),
               per_pair_ms=float(np.percentile(v, 50)) / batch_size)
    return out
