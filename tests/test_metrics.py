"""Metric functions against values computed by hand (see each test's comment)."""
import math

import numpy as np
import pytest

from crossguard import metrics as m
from crossguard.fileio import json_safe


def test_detection_frr_precision_recall_f1():
    # tp=2 (0,1), fn=1 (2), fp=1 (3), tn=1 (4)
    y, pred = [1, 1, 1, 0, 0], [1, 1, 0, 1, 0]
    assert m.confusion(y, pred) == {"tp": 2, "fn": 1, "fp": 1, "tn": 1}
    assert m.detection_rate(y, pred) == pytest.approx(2 / 3)
    assert m.attack_success_rate(y, pred) == pytest.approx(1 / 3)
    assert m.false_refusal_rate(y, pred) == pytest.approx(1 / 2)
    prf = m.precision_recall_f1(y, pred)
    assert prf == pytest.approx({"precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3})
    assert m.accuracy(y, pred) == pytest.approx(3 / 5)
    assert math.isnan(m.accuracy([], []))


def test_undefined_rates_are_nan_not_zero():
    assert math.isnan(m.detection_rate([0, 0], [1, 0]))
    assert math.isnan(m.false_refusal_rate([1, 1], [1, 0]))
    assert math.isnan(m.auroc([1, 1], [0.2, 0.9]))
    assert math.isnan(m.precision_recall_f1([0, 0], [0, 0])["precision"])


def test_auroc_with_ties():
    # positives 0.4, 0.8, 0.9 vs negatives 0.1, 0.4, 0.8: wins 1+0.5, 2+0.5, 3 -> 7 of 9 pairs
    y = [0, 0, 1, 1, 0, 1]
    s = [0.1, 0.4, 0.4, 0.8, 0.8, 0.9]
    assert m.auroc(y, s) == pytest.approx(7 / 9)
    assert m.auroc([0, 1], [0.3, 0.3]) == pytest.approx(0.5)
    assert m.auroc([0, 1], [0.9, 0.1]) == 0.0
    assert m.auroc(np.array([0, 0, 1, 1.0]), [0.1, 0.4, 0.35, 0.8]) == 0.75  # float 0/1 labels (ImpForge's judge)
    # agrees with the pairwise definition on random data with many ties
    rng = np.random.default_rng(0)
    yr = rng.integers(0, 2, 200)
    sr = rng.integers(0, 10, 200) / 10
    pos, neg = sr[yr == 1], sr[yr == 0]
    pairwise = ((pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum()) / (len(pos) * len(neg))
    assert m.auroc(yr, sr) == pytest.approx(pairwise)


def test_ece_tiny_set():
    # 15 bins: 0.05 -> bin 0, 0.95 -> bin 14, 0.65 and 0.6 -> bin 9
    # |0-0.05|/4 + |1-0.95|/4 + |0.5-0.625|*2/4 = 0.0125 + 0.0125 + 0.0625
    assert m.expected_calibration_error([0, 1, 1, 0], [0.05, 0.95, 0.65, 0.6]) == pytest.approx(0.0875)
    assert m.expected_calibration_error([0, 1], [0.0, 1.0]) == 0.0
    assert m.expected_calibration_error([0, 1], [1.0, 0.0]) == 1.0
    assert math.isnan(m.expected_calibration_error([], []))
    assert m.expected_calibration_error([1], [1.0]) == 0.0  # score 1.0 lands in the last bin
    with pytest.raises(ValueError):
        m.expected_calibration_error([1], [1.5])


def test_percentiles_and_latency_summary():
    v = list(range(1, 11))
    assert m.percentiles(v) == pytest.approx({"p50": 5.5, "p90": 9.1, "p99": 9.91})
    s = m.latency_summary([10.0, 20.0, 30.0, 40.0], batch_size=4)
    assert s["p50"] == pytest.approx(25.0)
    assert s["throughput"] == pytest.approx(16 / 0.1)  # 16 pairs in 100 ms
    assert s["per_pair_ms"] == pytest.approx(25.0 / 4)
    assert m.latency_summary([10.0, 10.0], batch_size=1, wall_s=0.04)["throughput"] == pytest.approx(50.0)


def test_threshold_curve_and_frr_target():
    y, s = [1, 0, 1, 0], [0.9, 0.3, 0.6, 0.7]
    c = m.threshold_curve(y, s)
    assert c["threshold"][:5] == [0.0, 0.3, 0.6, 0.7, 0.9]
    assert c["threshold"][5] > 1.0
    assert c["detection_rate"] == [1, 1, 1, 0.5, 0.5, 0]
    assert c["false_refusal_rate"] == [1, 1, 0.5, 0.5, 0, 0]


def test_summary_and_groups():
    y = [1, 1, 0, 0, 1]
    s = [0.9, 0.2, 0.1, 0.7, 0.6]
    kinds = ["implicit", "implicit", "benign", "benign-hard", "explicit-text"]
    g = m.group_breakdown(kinds, y, s, threshold=0.5)
    assert list(g) == ["benign", "benign-hard", "explicit-text", "implicit"]
    assert g["implicit"]["detection_rate"] == 0.5
    assert math.isnan(g["implicit"]["false_refusal_rate"])
    assert g["benign-hard"]["false_refusal_rate"] == 1.0
    total = m.classification_summary(y, s, 0.5)
    assert total["n"] == 5 and total["n_unsafe"] == 3
    assert total["detection_rate"] == pytest.approx(2 / 3)
    assert total["false_refusal_rate"] == pytest.approx(0.5)
    safe = json_safe(total)
    assert safe["confusion"] == {"tp": 2, "fn": 1, "fp": 1, "tn": 1}
    assert json_safe({"a": float("nan"), "b": np.float32(2.0)}) == {"a": None, "b": 2.0}


def test_bad_input_rejected():
    with pytest.raises(ValueError, match="0/1"):
        m.detection_rate([2, 1], [1, 1])
    with pytest.raises(ValueError, match="shape"):
        m.auroc([0, 1], [0.1])
    with pytest.raises(ValueError, match="NaN"):
        m.auroc([0, 1], [0.1, float("nan")])
