"""ImpForge's input folders: seeds and pool folders found in the data folder ($CROSSGUARD_DATA / --data), and a
missing one refused before the run writes anything (a retry then needs no --resume)."""
from __future__ import annotations

from pathlib import Path

import pytest

from crossguard.train.impforge.config import ForgeConfig, JudgeConfig
from crossguard.train.impforge.pipeline import check_inputs, open_run, resolve_path, seed_folder


def data_folder(root: Path) -> Path:
    (root / "seeds").mkdir(parents=True)
    (root / "seeds" / "harmful.txt").write_text("how to hurt someone\n")
    (root / "photos" / "mine").mkdir(parents=True)
    return root


def test_seeds_and_pool_folders_come_from_the_data_folder(tmp_path, monkeypatch):
    data = data_folder(tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CROSSGUARD_DATA", str(data))
    assert seed_folder(ForgeConfig()) == data / "seeds"
    other = data_folder(tmp_path / "other")
    assert seed_folder(ForgeConfig(data=str(other))) == other / "seeds"  # --data wins over the environment
    assert resolve_path("photos/mine", str(other)) == other / "photos" / "mine"
    assert resolve_path("photos/none", str(other)) == Path("photos/none")  # not found anywhere: as given
    check_inputs(ForgeConfig(pool=["photos/mine"], judge=JudgeConfig(kind="text")), resume=False)


@pytest.mark.parametrize("change, message", [
    ({"seeds": "no_such_folder"}, "seed folder"),
    ({"pool": ["photos/none"]}, "pool folder photos/none"),
    ({"judge": JudgeConfig(kind="composite"), "data": "missing_data"}, "data folder"),
])
def test_a_missing_input_is_refused_before_the_run_writes(tmp_path, monkeypatch, change, message):
    data = data_folder(tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CROSSGUARD_DATA", str(data))
    if change.get("data") == "missing_data":  # seeds still found: the judge's data folder is what is missing
        change = {**change, "seeds": str(data / "seeds")}
    config = ForgeConfig(**{"out": str(tmp_path / "out"), "judge": JudgeConfig(kind="text"), **change})
    with pytest.raises(FileNotFoundError, match=message):
        open_run(config, resume=False, progress=False)
    assert not (tmp_path / "out").exists()
