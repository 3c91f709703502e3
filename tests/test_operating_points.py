"""crossguard.train.guard.operating_points: thresholds redone from stored validation safe scores, fold detection
per rule, the plot and the JSON (no heads: folds only)."""
from __future__ import annotations

import json

import pytest

from crossguard.train.guard import operating_points as O

VAL = {"benign:templates": [0.1] * 90 + [0.9] * 5, "benign:hard": [0.95] * 5}
FOLD = {"val_safe_scores": VAL, "scores": {"a": 0.92, "b": 0.97, "c": 0.5, "d": 0.99}}


def test_rule_threshold_counts_only_the_kept_groups():
    assert 0.1 < O.rule_threshold(VAL, 0.10) < 0.11  # ten of 100 may be refused: every 0.9 and 0.95
    assert 0.9 < O.rule_threshold(VAL, 0.05) <= 0.95  # five may be: the 0.95s only
    assert 0.9 < O.rule_threshold(VAL, 0.05, ignores=["benign:hard"]) < 0.91  # five 0.9s of 95 break 5 %
    assert 0.1 < O.rule_threshold(VAL, 0.06, ignores=["benign:hard"]) < 0.11  # but not 6 %
    with pytest.raises(ValueError, match="no validation safe scores"):
        O.rule_threshold(VAL, 0.05, ignores=list(VAL))


def test_fold_points_per_target_and_old_folds_skipped():
    points = O.fold_points({"sst": FOLD, "old": {"scores": {"x": 0.1}}}, [0.05, 0.10])
    assert list(points) == ["sst"]
    assert points["sst"]["detection"] == [0.75, 1.0]  # just above 0.9: a, b, d; just above 0.1: all four


def test_cli_writes_points_and_plot_for_folds(tmp_path):
    (tmp_path / "fold").mkdir()
    loso = tmp_path / "fold" / "leave_one_out.json"
    loso.write_text(json.dumps({"sst": FOLD}))
    assert O.main(["--loso", str(loso), "--targets", "0.05,0.1", "--out", str(tmp_path / "p.json"),
                   "--plot", str(tmp_path / "p.png")]) == 0
    points = json.loads((tmp_path / "p.json").read_text())
    assert points["targets"] == [0.05, 0.1] and points["folds"]["fold:sst"]["detection"] == [0.75, 1.0]
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
