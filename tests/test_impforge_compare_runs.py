"""compare_runs: side-by-side policy rows from forge summaries; refuses runs whose untrained rows differ."""
from __future__ import annotations

import json

import pytest

from crossguard.train.impforge.compare_runs import COLUMNS, load_comparisons, main


def _run(folder, untrained_accept, trained_accept):
    folder.mkdir()
    row = {k: 0.5 for k in COLUMNS}
    comparison = {"untrained": {**row, "accepted": untrained_accept}, "trained": {**row, "accepted": trained_accept},
                  "n_triples": 4, "samples_per_triple": 2}
    (folder / "summary.json").write_text(json.dumps({"comparison": comparison}), encoding="utf-8")
    return folder


def test_rows_table_and_plot(tmp_path, capsys):
    a, b = _run(tmp_path / "a", 0.02, 0.08), _run(tmp_path / "b", 0.02, 0.10)
    rows = load_comparisons({"warm": a, "ppo": b})
    assert list(rows) == ["untrained", "warm", "ppo"] and rows["ppo"]["accepted"] == 0.10
    assert main([f"warm={a}", f"ppo={b}", "--out", str(tmp_path / "p.png")]) == 0
    out = capsys.readouterr().out
    assert "| ppo | 0.100 |" in out and (tmp_path / "p.png").stat().st_size > 1000


def test_runs_on_other_triples_are_refused(tmp_path, capsys):
    a, b = _run(tmp_path / "a", 0.02, 0.08), _run(tmp_path / "b", 0.03, 0.10)
    with pytest.raises(ValueError, match="untrained"):
        load_comparisons({"a": a, "b": b})
    assert main([f"a={a}", f"b={b}"]) == 2
    assert main([f"a={a}", f"c={tmp_path / 'missing'}"]) == 2
    assert "compare_runs" in capsys.readouterr().err
