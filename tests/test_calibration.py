"""Temperature scaling, ECE, threshold selection and the shared numpy policy."""
import numpy as np
import pytest

from crossguard.runtime.policy import PolicyError, apply_policy, calibrated_score, validate_policy
from crossguard.taxonomy import DOMAIN_NAMES
from crossguard.metrics import expected_calibration_error
from crossguard.train.guard.calibrate import (calibrate, fit_temperature, group_weights,
                                              select_threshold, sigmoid)


def miscalibrated(n=4000, scale=4.0, seed=0):
    rng = np.random.default_rng(seed)
    true_logit = rng.normal(0, 1.5, n)
    labels = (rng.random(n) < sigmoid(true_logit)).astype(float)
    return true_logit * scale, labels  # over-confident by a factor `scale`


def test_temperature_recovers_scale_and_lowers_ece():
    logits, labels = miscalibrated()
    t = fit_temperature(logits, labels)
    assert 3.0 < t < 5.0
    before = expected_calibration_error(labels, sigmoid(logits))
    after = expected_calibration_error(labels, calibrated_score(logits, t))
    assert after < before / 2 and after < 0.03


@pytest.mark.parametrize("target", [0.0, 0.02, 0.1])
def test_threshold_hits_target_frr(target):
    rng = np.random.default_rng(1)
    safe = rng.beta(2, 5, 1000)
    t = select_threshold(safe, target)
    frr = (safe >= t).mean()
    assert frr <= target + 1e-12
    # smallest such threshold: going just below it breaks the target
    lower = np.nextafter(np.sort(safe)[np.searchsorted(np.sort(safe), t) - 1], -np.inf)
    assert (safe >= lower).mean() > target
    with pytest.raises(ValueError):
        select_threshold(np.array([]), target)


def test_group_weights_bound_each_groups_refusals_alike():
    # 900 easy safe rows (scores < 0.5) and 100 hard ones (0.3-0.9): by rows 3 % allows most hard ones to be refused
    rng = np.random.default_rng(2)
    safe = np.concatenate([rng.uniform(0.0, 0.5, 900), rng.uniform(0.3, 0.9, 100)])
    groups = ["easy"] * 900 + ["hard"] * 100
    w = group_weights(groups)
    assert np.isclose(w[:900].sum(), 0.5) and np.isclose(w[900:].sum(), 0.5)
    by_rows, balanced = select_threshold(safe, 0.03), select_threshold(safe, 0.03, w)
    assert balanced > by_rows
    hard = safe[900:]
    assert (hard >= balanced).mean() <= 0.06 + 1e-12 < (hard >= by_rows).mean()  # half the weight: 2 x 3 %
    assert select_threshold(safe, 0.03, np.ones(1000)) == by_rows  # equal weights: the row count rule
    logits = np.log(safe / (1 - safe))  # calibrate passes the weights through (temperature ~1 on these labels)
    _, t = calibrate(logits, np.zeros(1000), np.ones(1000, bool), 0.03, safe_weights=w)
    _, t_rows = calibrate(logits, np.zeros(1000), np.ones(1000, bool), 0.03)
    assert t > t_rows


def test_calibrate_returns_threshold_for_safe_subset():
    logits, labels = miscalibrated(seed=3)
    cal, t = calibrate(logits, labels, labels == 0, 0.05)
    assert cal["ece_after"] < cal["ece_before"]
    scores = calibrated_score(logits, cal["temperature"])
    assert (scores[labels == 0] >= t).mean() <= 0.05


def probs_for(domain):
    p = np.full(14, 0.01)
    p[DOMAIN_NAMES.index(domain)] = 0.9
    return p


def test_policy_threshold_domain_override_and_disable():
    policy = {"threshold": 0.5}
    assert apply_policy(0.6, probs_for("violence"), policy) == (True, "violence")
    assert apply_policy(0.4, probs_for("violence"), policy) == (False, "violence")
    policy = {"threshold": 0.5, "domain_thresholds": {"violence": 0.3, "drugs_weapons": 0.9}}
    assert apply_policy(0.4, probs_for("violence"), policy)[0] is True
    assert apply_policy(0.4, probs_for("hate_speech"), policy)[0] is False
    assert apply_policy(0.8, probs_for("drugs_weapons"), policy)[0] is False
    policy = {"threshold": 0.5, "disabled_domains": ["controversial_politics"]}
    assert apply_policy(0.99, probs_for("controversial_politics"), policy) == (False, "controversial_politics")
    unsafe, domains = apply_policy(np.array([0.99, 0.99]),
                                   np.stack([probs_for("controversial_politics"), probs_for("violence")]), policy)
    assert unsafe.tolist() == [False, True] and domains == ["controversial_politics", "violence"]


def test_policy_validation():
    with pytest.raises(PolicyError, match="unknown domain"):
        validate_policy({"disabled_domains": ["cats"]})
    with pytest.raises(PolicyError, match="threshold"):
        validate_policy({"threshold": 1.5})
    with pytest.raises(PolicyError, match="unknown policy key"):
        validate_policy({"treshold": 0.5})
    with pytest.raises(PolicyError, match="shape"):
        apply_policy(np.array([0.5, 0.5]), np.zeros((3, 14)), {})
    with pytest.raises(PolicyError, match="temperature"):
        calibrated_score(np.zeros(2), 0.0)
