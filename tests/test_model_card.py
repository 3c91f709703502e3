"""The model card's generated tables: leave-one-out, dev sets with targets, own test groups; only the marked
block of the card is replaced."""
from __future__ import annotations

import json

from crossguard.train.guard import model_card


def test_card_block_is_generated_from_the_runs(tmp_path):
    report = {"dev": {"xstest": {"n": 450, "detection": 0.93, "false_refusal": 0.12}},
              "test_by_group": {"advbench": {"n": 51, "detection": 1.0}}, "val": {"n": 10}, "test": {"n": 12},
              "threshold": 0.69, "config": {"target_frr": 0.03}}
    (tmp_path / "seed0").mkdir()
    (tmp_path / "seed0" / "report.json").write_text(json.dumps(report))
    seeds = {"seeds": [0, 1], "mean": {"dev": {"xstest": {"detection": {"mean": 0.92, "min": 0.91, "max": 0.93}}}}}
    (tmp_path / "seeds.json").write_text(json.dumps(seeds))
    loso = tmp_path / "loso.json"
    loso.write_text(json.dumps({"advbench": {"held_out": {"n": 520, "detection": 0.975}, "threshold": 0.7}}))
    loso2 = tmp_path / "loso2.json"  # folds of a second run are merged
    loso2.write_text(json.dumps({"catqa": {"held_out": {"n": 550, "detection": 0.99}, "threshold": 0.71},
                                 "hh_rlhf": {"held_out": {"n": 2000, "detection": 0.8, "false_refusal": 0.3,
                                                          "auroc": 0.75}, "threshold": 0.72}}))
    dev = tmp_path / "dev.json"
    dev.write_text(json.dumps({"xstest": {"n": 450, "detection": 0.94, "false_refusal": 0.09, "auroc": 0.96}}))
    card = tmp_path / "README.md"
    card.write_text("# Card\n\nhand-written\n\n<!-- model-card:start -->\nSTALE\n<!-- model-card:end -->\n\ntail\n")
    assert model_card.main(["--train", str(tmp_path), "--leave-one-out", str(loso), str(loso2), "--dev", str(dev),
                            "--card", str(card)]) == 0
    text = card.read_text()
    assert text.startswith("# Card\n\nhand-written") and text.rstrip().endswith("tail") and "STALE" not in text
    assert "| advbench | 520 | 0.975 | - | - | 0.700 |" in text and "| catqa | 550 | 0.990 | - | - | 0.710 |" in text
    assert "| hh_rlhf | 2000 | 0.800 | 0.300 | 0.750 | 0.720 |" in text  # a corpus of both labels
    assert "| xstest (n=450) | detection | >= 0.90 | 0.940 | 0.920 (0.910-0.930) |" in text
    assert "| advbench | 51 | 1.000 | n/a |" in text


def test_shipped_seed_picks_the_own_split_tables(tmp_path):
    for seed, detection in ((0, 0.5), (1, 0.9)):
        (tmp_path / f"seed{seed}").mkdir()
        (tmp_path / f"seed{seed}" / "report.json").write_text(json.dumps(
            {"test_by_group": {"advbench": {"n": 51, "detection": detection}}, "val": {}, "test": {},
             "threshold": 0.6, "config": {"target_frr": 0.03}}))
    card = tmp_path / "README.md"
    assert model_card.main(["--train", str(tmp_path), "--card", str(card), "--shipped-seed", "1"]) == 0
    text = card.read_text()
    assert "(seed 1)" in text and "| advbench | 51 | 0.900 | n/a |" in text and "0.500" not in text


def test_real_benign_held_out_pools_the_validation_and_test_rows():
    report = {"val_by_group": {"benign:self_instruct": {"n": 40, "false_refusal": 0.1}},
              "test_by_group": {"benign:self_instruct": {"n": 60, "false_refusal": 0.2},
                                "benign:templates": {"n": 500, "false_refusal": 0.0}}}
    assert model_card.real_benign_held_out(report) == {"n": 100, "false_refusal": 0.16, "splits": ["val", "test"]}
    assert model_card.real_benign_held_out({"test_by_group": {}}) is None  # a report from before the measure
    assert model_card.real_benign_held_out(report, "benign:hh_rlhf") is None
