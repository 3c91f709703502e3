"""Screen a JSONL manifest of ``{"id", "image", "text", "label"}`` lines (``crossguard screen --manifest``).

``screen_manifest(guard, path, emit)`` streams one result object per line to ``emit`` (a verdict, or an error
with the line number: a bad line never stops the others; an error comes as soon as its line is read, verdicts when
their batch is screened, so match results by ``line``) and returns the summary counts.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable


def manifest_rows(path: Path, image_root: Path):
    """Yield (line number, id, image path or None, text, label or None) or (line number, id, error): a line that
    is not UTF-8, not JSON or has a bad field is reported by number and the others are still screened."""
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                yield number, f"line-{number}", f"not valid UTF-8 (byte {e.start + 1}: {raw[e.start:e.start + 1]!r})"
                continue
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                yield number, f"line-{number}", f"not valid JSON ({e.msg} at column {e.colno})"
                continue
            if not isinstance(row, dict):
                yield number, f"line-{number}", "a line must be a JSON object"
                continue
            rid = str(row.get("id", f"line-{number}"))
            image, text = row.get("image"), row.get("text", "")
            if image is not None and not isinstance(image, str):
                yield number, rid, "field 'image' must be a path string or null"
                continue
            if not isinstance(text, str):
                yield number, rid, f"field 'text' must be a string, got {type(text).__name__}"
                continue
            if image:
                image = Path(image) if Path(image).is_absolute() else image_root / image
            yield number, rid, (image or None), text, row.get("label")


def screen_manifest(guard, path: str | Path, emit: Callable[[dict], None], image_root: str | Path | None = None,
                    batch_size: int = 16) -> dict:
    """Screen every line of ``path`` in batches of ``batch_size``; relative image paths are read from
    ``image_root`` (default: the manifest's folder). Returns ``screened``, ``unsafe``, ``errors``, ``labelled``,
    ``correct``, ``seconds``, ``backend``, and ``latency_ms_p50`` / ``accuracy`` when there is something to
    report. Raises ``OSError`` when the manifest cannot be read."""
    from tqdm import tqdm

    from .preprocess import InputError

    path = Path(path)
    root = Path(image_root) if image_root else path.parent
    counts = {"screened": 0, "unsafe": 0, "errors": 0, "labelled": 0, "correct": 0}
    latencies: list[float] = []
    started = time.perf_counter()

    def flush(pending: list) -> None:
        ready = []
        for number, rid, image, text, label in pending:
            try:
                ready.append((number, rid, label, guard.prepare(image, text)))
            except InputError as e:
                counts["errors"] += 1
                emit({"id": rid, "line": number, "error": str(e)})
        if not ready:
            return
        for (number, rid, label, _), verdict in zip(ready, guard.screen_prepared([r[3] for r in ready])):
            counts["screened"] += 1
            counts["unsafe"] += verdict.unsafe
            latencies.append(verdict.latency_ms)
            if label in ("safe", "unsafe"):
                counts["labelled"] += 1
                counts["correct"] += (label == verdict.label)
            emit({"id": rid, "line": number, **verdict.to_dict()})

    pending: list = []
    with tqdm(desc="screening", unit="pair", disable=None) as bar:
        for row in manifest_rows(path, root):
            if len(row) == 3:
                counts["errors"] += 1
                emit({"id": row[1], "line": row[0], "error": row[2]})
                continue
            pending.append(row)
            if len(pending) >= max(1, batch_size):
                flush(pending)
                bar.update(len(pending))
                pending = []
        flush(pending)
        bar.update(len(pending))
    summary: dict = {**counts, "seconds": round(time.perf_counter() - started, 3), "backend": guard.backend}
    if latencies:
        summary["latency_ms_p50"] = round(sorted(latencies)[len(latencies) // 2], 2)
    if counts["labelled"]:
        summary["accuracy"] = round(counts["correct"] / counts["labelled"], 4)
    return summary
