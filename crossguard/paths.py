"""Where CrossGuard looks for things by default: one module, so no other module works out the repository root
from its own file.

* ``source_root()``: the source checkout this package runs from (an editable install), None in an installed
  wheel. Only defaults that make sense in a checkout use it.
* ``package_dir(name)``: the folder of a subpackage (``"train"`` -> ``crossguard.train``), found without
  importing it; the same call works in a checkout (``train/``) and in a wheel (``crossguard/train/``).
  ``default_guard_dir()`` is the committed head inside it, ``results_dir()`` the benchmark results.
* ``data_root(explicit)``: the data folder (seed corpora in ``seeds/``, development sets in ``dev/``): the
  user's ``--data`` (``explicit``), else ``$CROSSGUARD_DATA``, else ``../shared/data`` beside a source
  checkout. ``data_dir(name)`` is a folder inside it. Both raise ``DataNotFoundError`` naming
  ``CROSSGUARD_DATA`` when the folder is absent.
* ``artifacts_dir()``: what runs build (data sets, feature caches, the image pool): ``<checkout>/artifacts``,
  else ``./artifacts`` in the working directory.
* ``cache_dir()``: converted backbones: ``$CROSSGUARD_CACHE``, else ``~/.cache/crossguard``;
  ``pool_cache_dir()``: the image pool index: ``$CROSSGUARD_CACHE/pool``, else ``artifacts/pool``;
  ``default_bundle_dir()``: ``$CROSSGUARD_BUNDLE``, else ``~/.cache/crossguard/bundles/default``
  (docs/contracts.md).

Imports nothing of the subpackages and no third-party library (the core layer).
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

DATA_ENV = "CROSSGUARD_DATA"
CACHE_ENV = "CROSSGUARD_CACHE"
BUNDLE_ENV = "CROSSGUARD_BUNDLE"

_CORE_DIR = Path(__file__).resolve().parent


class DataNotFoundError(FileNotFoundError):
    """The data folder (or a folder inside it) is not there; the message says how to point at it."""


def source_root() -> Path | None:
    """The source checkout (pyproject.toml beside ``crossguard/``), None when running from an installed wheel."""
    root = _CORE_DIR.parent
    return root if (root / "pyproject.toml").is_file() and (root / "train").is_dir() else None


def package_dir(name: str) -> Path:
    """The folder of the subpackage ``crossguard.<name>`` (``runtime``, ``train``, ``export``, ``benchmarks``),
    found without running its code."""
    try:
        spec = importlib.util.find_spec(f"crossguard.{name}")
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations))).resolve()
    root = source_root()
    if root is not None and (root / name / "__init__.py").is_file():
        return root / name
    raise ModuleNotFoundError(f"crossguard.{name} is not installed")


def default_guard_dir() -> Path:
    """The committed guard head (``train/default_guard``: fusion weights + guard.json)."""
    return package_dir("train") / "default_guard"


def results_dir() -> Path:
    """The benchmark results folder (``benchmarks/results``)."""
    return package_dir("benchmarks") / "results"


def artifacts_dir() -> Path:
    """``<checkout>/artifacts`` in a source checkout, else ``./artifacts``."""
    root = source_root()
    return (root if root is not None else Path.cwd()) / "artifacts"


def cache_dir() -> Path:
    """``$CROSSGUARD_CACHE``, else ``~/.cache/crossguard``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "crossguard"


def pool_cache_dir() -> Path:
    """The image pool's index: ``$CROSSGUARD_CACHE/pool``, else ``artifacts/pool``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() / "pool" if env else artifacts_dir() / "pool"


def default_bundle_dir() -> Path:
    """``$CROSSGUARD_BUNDLE``, else ``~/.cache/crossguard/bundles/default``."""
    env = os.environ.get(BUNDLE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "crossguard" / "bundles" / "default"


def _default_data_root() -> tuple[Path | None, str]:
    """(the data folder to use when the caller names none, where it came from)."""
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env).expanduser(), f"${DATA_ENV}"
    root = source_root()
    if root is not None:
        return root.parent / "shared" / "data", "the folder beside the source checkout"
    return None, ""


def data_root(explicit: str | os.PathLike | None = None) -> Path:
    """The data folder: ``explicit`` (a user's ``--data``), else ``$CROSSGUARD_DATA``, else ``../shared/data``
    beside a source checkout. Raises ``DataNotFoundError`` when it is not a folder."""
    if explicit is not None:
        path, origin = Path(explicit).expanduser(), "the given data folder"
    else:
        path, origin = _default_data_root()
    if path is None:
        raise DataNotFoundError(f"no data folder: set {DATA_ENV} to the folder that holds seeds/ and dev/, "
                                "or pass the folder on the command line")
    if not path.is_dir():
        raise DataNotFoundError(f"data folder {path} ({origin}) not found: set {DATA_ENV} to the folder that holds "
                                "seeds/ and dev/, or pass the folder on the command line")
    return path


def data_dir(*parts: str, explicit: str | os.PathLike | None = None) -> Path:
    """A folder inside the data folder (``data_dir("seeds")``); ``DataNotFoundError`` when it is absent."""
    path = data_root(explicit).joinpath(*parts)
    if not path.is_dir():
        raise DataNotFoundError(f"{path} not found: the data folder ({DATA_ENV} or --data) has no "
                                f"{'/'.join(parts)}/")
    return path


def find_data_root(explicit: str | os.PathLike | None = None) -> Path | None:
    """``data_root(explicit)``, or None when there is none (for optional data: skipped tests, default dev sets)."""
    try:
        return data_root(explicit)
    except DataNotFoundError:
        return None
