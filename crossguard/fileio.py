"""File helpers: atomic writes (a crash or an exception never leaves a half-written file behind), the one
JSON writer, the one file hash."""
from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

_UMASK = os.umask(0o022)  # read the process umask once (os.umask can only be read by setting it)
os.umask(_UMASK)


def _plain_permissions(path: Path) -> None:
    """Give what ``tempfile`` created (files 0600, directories 0700) the mode a plain ``open``/``mkdir``
    would, so an atomic write does not leave a bundle or a head that other users cannot read."""
    for p in [path, *path.rglob("*")] if path.is_dir() else [path]:
        mode = p.stat().st_mode & 0o777
        if p.is_dir() and mode == 0o700:
            os.chmod(p, 0o777 & ~_UMASK)
        elif p.is_file() and mode == 0o600:
            os.chmod(p, 0o666 & ~_UMASK)


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (parents created); it replaces ``path`` when the block
    succeeds and is deleted when it raises. ``suffix`` lets writers that append extensions (np.save,
    matplotlib) keep the right file type."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        _plain_permissions(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 text atomically; returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def json_safe(obj: Any) -> Any:
    """``obj`` with nan/inf floats as None, numpy arrays and scalars as Python values, paths as strings,
    tuples as lists (what JSON can hold)."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if hasattr(obj, "dtype") and hasattr(obj, "tolist"):  # numpy array or scalar, without importing numpy
        return json_safe(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_json(path: str | os.PathLike, obj: Any, indent: int = 2) -> Path:
    """Write ``json_safe(obj)`` as UTF-8 JSON atomically (nan becomes null; any other object its ``str``);
    returns the path."""
    text = json.dumps(json_safe(obj), indent=indent, ensure_ascii=False, allow_nan=False, default=str)
    return atomic_write_text(path, text + "\n")


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """sha256 hex digest of a file, streamed."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def link_or_copy(src: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Put ``src`` at ``dest`` (a hard link when the file system allows, else a copy) unless ``dest`` exists;
    returns ``dest``."""
    dest = Path(dest)
    if not dest.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, dest)
        except OSError:
            shutil.copyfile(src, dest)
    return dest


def replace_dir(new: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Move the finished directory ``new`` to ``dst``. An existing ``dst`` is moved aside first, put back if
    the move fails, and removed afterwards, so ``dst`` is always either the old or the new directory."""
    new, dst = Path(new), Path(dst)
    if not dst.exists():
        os.replace(new, dst)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{dst.name}.old-", dir=dst.parent))
    os.replace(dst, old / dst.name)
    try:
        os.replace(new, dst)
    except BaseException:
        os.replace(old / dst.name, dst)
        raise
    finally:
        shutil.rmtree(old, ignore_errors=True)


@contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary directory beside ``path``; it replaces ``path`` (see ``replace_dir``) when the
    block succeeds and is deleted when it raises."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        yield tmp
        _plain_permissions(tmp)
        replace_dir(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
