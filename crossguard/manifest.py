"""Datasets: a JSONL manifest (one ``Sample`` per line) plus an image folder.

Reading validates every line and reports all bad lines by number in one ``ManifestError``; writing is
atomic (temporary file + rename), so a crash never leaves a half-written manifest.
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from .fileio import atomic_path
from .schemas import Sample, SchemaError


class ManifestError(ValueError):
    """One or more manifest lines are invalid; ``errors`` holds (line number, message) pairs."""

    def __init__(self, path: Path, errors: list[tuple[int, str]]):
        self.path = path
        self.errors = errors
        shown = "\n".join(f"  line {n}: {msg}" for n, msg in errors[:20])
        more = f"\n  ... and {len(errors) - 20} more" if len(errors) > 20 else ""
        super().__init__(f"{path}: {len(errors)} invalid line(s)\n{shown}{more}")


def iter_manifest(path: str | os.PathLike) -> Iterator[tuple[int, Sample | str]]:
    """Yield (line number, Sample) or (line number, error message); blank lines are skipped."""
    with open(path, encoding="utf-8", errors="strict") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                yield number, Sample.from_dict(json.loads(line))
            except json.JSONDecodeError as e:
                yield number, f"not valid JSON ({e.msg} at column {e.colno})"
            except SchemaError as e:
                yield number, str(e)


def read_manifest(path: str | os.PathLike, image_root: str | os.PathLike | None = None,
                  check_images: bool = True) -> list[Sample]:
    """Read and validate a manifest. Image paths become absolute (relative to ``image_root``, default
    the manifest's folder). Raises ``ManifestError`` listing every bad line, duplicate id and missing
    image; raises ``FileNotFoundError`` when the manifest itself is missing."""
    path = Path(path)
    root = Path(image_root) if image_root is not None else path.parent
    samples: list[Sample] = []
    errors: list[tuple[int, str]] = []
    seen: dict[str, int] = {}
    try:
        for number, item in iter_manifest(path):
            if isinstance(item, str):
                errors.append((number, item))
                continue
            if item.id in seen:
                errors.append((number, f"duplicate id {item.id!r} (first on line {seen[item.id]})"))
                continue
            seen[item.id] = number
            image = Path(item.image)
            if not image.is_absolute():
                image = root / image
            if check_images and not image.is_file():
                errors.append((number, f"image not found: {image}"))
                continue
            item.image = str(image)
            samples.append(item)
    except UnicodeDecodeError as e:
        errors.append((0, f"file is not UTF-8: {e}"))
    if errors:
        raise ManifestError(path, errors)
    return samples


def write_manifest(path: str | os.PathLike, samples: Iterable[Sample],
                   image_root: str | os.PathLike | None = None) -> int:
    """Write samples atomically; image paths under ``image_root`` (default the manifest's folder) are
    stored relative to it so the dataset folder can move. Returns the number of lines written."""
    path = Path(path)
    root = Path(image_root) if image_root is not None else path.parent
    count = 0
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for s in samples:
            d = s.to_dict()
            try:
                d["image"] = str(Path(s.image).resolve().relative_to(root.resolve()))
            except ValueError:
                pass
            f.write(json.dumps(d, ensure_ascii=False) + "\n")
            count += 1
    return count
