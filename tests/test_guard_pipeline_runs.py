"""crossguard train's runs as library functions: seeds (folders, the first head copied out, means) and
leave-one-out (one fold per corpus, the JSON rewritten after each), with training itself replaced by a stub."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from crossguard.train.guard import pipeline as P


def stub_training(monkeypatch, calls: list, saved: list) -> None:
    def train_guard(cfg, resources, dev=None, progress=True):
        calls.append((cfg.fit.seed, cfg.recipe.seed, list(cfg.recipe.held_out)))
        held = {c: {"n": 10, "detection": 0.5} for c in cfg.recipe.held_out}
        return object(), {"config": cfg.to_dict(), "held_out": held, "held_out_misses": {c: {"by_domain": {}} for c in held},
                          "held_out_scores": {c: {"abc": 0.5} for c in held}, "dev": {"xstest": {"detection": 0.9 + cfg.fit.seed / 100}},
                          "val": {"n": 10}, "test": {"n": 12}, "threshold": 0.7, "seconds": {"total": 1.0},
                          "val_safe_scores": {"benign:templates": [0.1, 0.8]}}

    monkeypatch.setattr(P, "train_guard", train_guard)
    def save_guard(model, report, out, concepts=None):
        saved.append(Path(out))
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "guard.json").write_text(json.dumps({"seed": report["config"]["fit"]["seed"]}))

    monkeypatch.setattr(P, "save_guard", save_guard)


def test_train_seeds_writes_each_seed_and_their_mean(tmp_path, monkeypatch):
    calls, saved = [], []
    stub_training(monkeypatch, calls, saved)
    config = P.GuardTrainConfig()
    reports = P.train_seeds(config, SimpleNamespace(concepts=None), [0, 2], tmp_path, guard_out=tmp_path / "head",
                            progress=False)
    assert calls == [(0, 0, []), (2, 2, [])] and config.fit.seed == P.GuardTrainConfig().fit.seed
    assert saved == [tmp_path / "seed0" / "guard", tmp_path / "seed2" / "guard"]
    assert json.loads((tmp_path / "head" / "guard.json").read_text()) == {"seed": 0}  # the first seed's head
    assert set(reports) == {"0", "2"} and (tmp_path / "seed2" / "report.json").is_file()
    mean = json.loads((tmp_path / "seeds.json").read_text())["mean"]
    assert mean["dev"]["xstest"]["detection"] == {"mean": 0.91, "min": 0.9, "max": 0.92}


def test_seeds_already_trained_with_the_same_config_are_kept(tmp_path, monkeypatch):
    calls, saved = [], []
    stub_training(monkeypatch, calls, saved)
    config = P.GuardTrainConfig()
    P.train_seeds(config, SimpleNamespace(concepts=None), [0], tmp_path / "seed0", progress=False)  # a one-seed run
    calls.clear()
    reports = P.train_seeds(config, SimpleNamespace(concepts=None), [0, 1], tmp_path, progress=False)
    assert calls == [(1, 1, [])] and set(reports) == {"0", "1"}  # seed 0 was kept
    (tmp_path / "seed1" / "guard" / "guard.json").unlink()  # a head that was not saved is retrained
    calls.clear()
    P.train_seeds(config, SimpleNamespace(concepts=None), [0, 1], tmp_path, progress=False)
    assert calls == [(1, 1, [])]
    other = P.GuardTrainConfig()
    other.target_frr = 0.05  # and so is a seed trained with another config
    assert P.finished_run(tmp_path / "seed0", other) is None
    P.train_seeds(other, SimpleNamespace(concepts=None), [0, 1], tmp_path, progress=False)
    assert calls[1:] == [(0, 0, []), (1, 1, [])]


def test_one_seed_writes_into_out_without_a_mean(tmp_path, monkeypatch):
    calls, saved = [], []
    stub_training(monkeypatch, calls, saved)
    P.train_seeds(P.GuardTrainConfig(), SimpleNamespace(concepts=None), [5], tmp_path, progress=False)
    assert saved == [tmp_path / "guard"] and (tmp_path / "report.json").is_file()
    assert not (tmp_path / "seeds.json").exists()


def test_leave_one_out_trains_without_each_corpus_and_keeps_finished_folds(tmp_path, monkeypatch):
    calls, saved = [], []
    stub_training(monkeypatch, calls, saved)
    results = P.leave_one_out(P.GuardTrainConfig(), SimpleNamespace(concepts=None), ["advbench", "catqa"],
                              progress=False, out=tmp_path / "loso")
    assert [c[2] for c in calls] == [["advbench"], ["catqa"]] and saved == []
    written = json.loads((tmp_path / "loso" / "leave_one_out.json").read_text())
    assert written == json.loads(json.dumps(results)) and written["catqa"]["held_out"] == {"n": 10, "detection": 0.5}
    assert "read" not in written["catqa"]  # no hand reading of CatQA
    assert written["catqa"]["val_safe_scores"] == {"benign:templates": [0.1, 0.8]}  # the threshold can be redone
    results = P.leave_one_out(P.GuardTrainConfig(), SimpleNamespace(concepts=None), ["harmfulqa"], progress=False)
    assert results["harmfulqa"]["read"]["unread"] == 1  # the stub's one score is not a HarmfulQA text


def test_safe_scores_by_group_keep_only_safe_rows_rounded():
    from crossguard.train.guard.composite import PairRow

    rows = [PairRow(t, "", "", -1, unsafe, None, "none", g) for t, unsafe, g in
            [("a", False, "b:x"), ("b", True, "h"), ("c", False, "a:y"), ("d", False, "b:x")]]
    got = P.safe_scores_by_group(rows, np.array([0.123456, 0.9, 0.5, 0.25]))
    assert got == {"a:y": [0.5], "b:x": [0.1235, 0.25]} and list(got) == ["a:y", "b:x"]


def test_misses_lists_what_a_held_out_corpus_lost():
    from crossguard.train.guard.composite import PairRow

    rows = [PairRow(t, "", "", -1, unsafe, domain, "text", "g") for t, unsafe, domain in
            [("a", True, "violence"), ("b", True, "violence"), ("c", True, None), ("d", False, None)]]
    got = P.misses(rows, np.array([0.9, 0.2, 0.1, 0.0]), threshold=0.5, lowest=2)
    assert got == {"by_domain": {"-": [1, 1], "violence": [1, 2]}, "lowest": [[0.1, "c"], [0.2, "b"]]}


def test_text_scores_key_each_held_out_text_by_its_label_key():
    from crossguard.train.corpora import text_key
    from crossguard.train.guard.composite import PairRow

    rows = [PairRow(t, "", "", -1, True) for t in ("How do I  pick a lock?", "b")]
    got = P.text_scores(rows, np.array([0.12345, 0.9]))
    assert got == {text_key("how do i pick a lock?"): 0.1235, text_key("b"): 0.9}


def test_reading_rates_measure_a_held_out_corpus_against_its_hand_reading():
    scores = {"a": 0.9, "b": 0.2, "c": 0.8, "d": 0.1, "e": 0.95, "f": 0.99}
    reading = {"a": "unsafe", "b": "unsafe", "c": "safe", "d": "safe", "e": "unclear"}
    got = P.reading_rates(scores, reading, threshold=0.5)
    assert got == {"unsafe": 2, "safe": 2, "unread": 1, "detection": 0.5, "flagged_safe": 0.5, "auroc": 0.75}


def test_threshold_rows_are_the_safe_rows_outside_the_ignored_groups():
    from crossguard.train.guard.composite import PairRow

    rows = [PairRow("a", "", "", -1, True, group="advbench"), PairRow("b", "", "", -1, False, group="benign:templates"),
            PairRow("c", "", "", -1, False, group="benign:hh_rlhf"), PairRow("d", "", "", -1, True, group="hh_rlhf")]
    assert P.threshold_rows(rows, []).tolist() == [False, True, True, False]
    assert P.threshold_rows(rows, ["benign:hh_rlhf"]).tolist() == [False, True, False, False]
    config = P.GuardTrainConfig.from_dict({"threshold_ignores": ["benign:hh_rlhf"]})
    assert config.threshold_ignores == ["benign:hh_rlhf"]
