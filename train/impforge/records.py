"""Records passed between ImpForge stages and the append-only files that make a run resumable.

``Triple`` is stage 1's output (harmful query, keyword, benign image). ``JsonlLog`` appends JSON records
and fsyncs each batch, so a kill loses at most the batch being written; on reopening it reads back what
is there (a torn last line is dropped) and ``add`` skips ids already present, so a resumed run that redoes
a step neither duplicates nor loses samples.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable

from crossguard.fileio import atomic_write_text


@dataclass
class Triple:
    id: str  # "<seed id>#<keyword>"
    seed_id: str
    query: str
    keyword: str
    image: str  # absolute path of the pool thumbnail
    image_id: str
    caption: str
    domain: str
    split: str
    scores: dict = field(default_factory=dict)  # keyword score, retrieval score, benign-check signals

    def to_dict(self) -> dict:
        return asdict(self)


class JsonlLog:
    """Append-only JSONL keyed by ``id``."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.records: dict[str, dict] = {}
        if self.path.is_file():
            with open(self.path, encoding="utf-8") as f:
                for line in f:
                    try:
                        rec = json.loads(line)
                    except json.JSONDecodeError:
                        continue  # torn last line from a kill
                    if isinstance(rec, dict) and "id" in rec:
                        self.records.setdefault(rec["id"], rec)
            self._rewrite_clean()

    def _rewrite_clean(self) -> None:
        """Drop a torn tail so new lines never glue onto half a record."""
        atomic_write_text(self.path, "".join(json.dumps(rec, ensure_ascii=False) + "\n"
                                             for rec in self.records.values()))

    def __contains__(self, record_id: str) -> bool:
        return record_id in self.records

    def __len__(self) -> int:
        return len(self.records)

    def add(self, records: Iterable[dict]) -> int:
        """Append the records whose id is new; returns how many were written."""
        new = [r for r in records if r["id"] not in self.records]
        if not new:
            return 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            for r in new:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
                self.records[r["id"]] = r
            f.flush()
            os.fsync(f.fileno())
        return len(new)

    def values(self) -> list[dict]:
        return list(self.records.values())
