"""crossguard.paths: every default location in one place; the data folder from --data, $CROSSGUARD_DATA or
beside the checkout, with an error naming the variable when it is absent."""
from __future__ import annotations

from pathlib import Path

import pytest

from crossguard import paths

REPO = Path(__file__).resolve().parents[1]


def test_source_checkout_and_packaged_folders():
    assert paths.source_root() == REPO
    assert paths.package_dir("train") == REPO / "train"
    assert paths.package_dir("benchmarks") == REPO / "benchmarks"
    assert (paths.default_guard_dir() / "guard.json").is_file()
    assert paths.results_dir() == REPO / "benchmarks" / "results"
    assert paths.artifacts_dir() == REPO / "artifacts"
    with pytest.raises(ModuleNotFoundError, match="crossguard.nothing"):
        paths.package_dir("nothing")


def test_caches_and_bundle_follow_their_variables(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for var in ("CROSSGUARD_CACHE", "CROSSGUARD_BUNDLE"):
        monkeypatch.delenv(var, raising=False)
    assert paths.cache_dir() == tmp_path / "home" / ".cache" / "crossguard"
    assert paths.pool_cache_dir() == REPO / "artifacts" / "pool"
    assert paths.default_bundle_dir() == tmp_path / "home" / ".cache" / "crossguard" / "bundles" / "default"
    monkeypatch.setenv("CROSSGUARD_CACHE", str(tmp_path / "c"))
    monkeypatch.setenv("CROSSGUARD_BUNDLE", str(tmp_path / "b"))
    assert paths.cache_dir() == tmp_path / "c"
    assert paths.pool_cache_dir() == tmp_path / "c" / "pool"
    assert paths.default_bundle_dir() == tmp_path / "b"


def test_data_root_order(monkeypatch, tmp_path):
    (tmp_path / "env" / "seeds").mkdir(parents=True)
    (tmp_path / "given").mkdir()
    monkeypatch.setenv("CROSSGUARD_DATA", str(tmp_path / "env"))
    assert paths.data_root() == tmp_path / "env"
    assert paths.data_root(tmp_path / "given") == tmp_path / "given"  # the user's --data wins
    assert paths.data_dir("seeds") == tmp_path / "env" / "seeds"
    with pytest.raises(paths.DataNotFoundError, match="has no dev/"):
        paths.data_dir("dev")


def test_missing_data_names_the_variable(monkeypatch, tmp_path):
    monkeypatch.setenv("CROSSGUARD_DATA", str(tmp_path / "absent"))
    with pytest.raises(FileNotFoundError, match="CROSSGUARD_DATA"):
        paths.data_root()
    with pytest.raises(paths.DataNotFoundError, match="CROSSGUARD_DATA"):
        paths.data_dir("seeds")
    assert paths.find_data_root() is None
    with pytest.raises(paths.DataNotFoundError, match="CROSSGUARD_DATA"):
        paths.data_root(tmp_path / "also-absent")


def test_installed_wheel_has_no_checkout_defaults(monkeypatch, tmp_path):
    """Without a source checkout there is no ../shared/data guess: the error asks for the variable."""
    monkeypatch.setattr(paths, "source_root", lambda: None)
    monkeypatch.delenv("CROSSGUARD_DATA", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(paths.DataNotFoundError, match="no data folder: set CROSSGUARD_DATA"):
        paths.data_root()
    assert paths.artifacts_dir() == tmp_path / "artifacts"


def test_build_data_without_data_says_where_to_point(monkeypatch, tmp_path, capsys):
    pytest.importorskip("torch")
    from crossguard.cli import main

    monkeypatch.setenv("CROSSGUARD_DATA", str(tmp_path / "absent"))
    assert main(["build-data", "--out", str(tmp_path / "out")]) == 2
    assert "CROSSGUARD_DATA" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
