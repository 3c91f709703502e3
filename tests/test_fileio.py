"""crossguard.fileio: the one JSON writer (atomic, nan as null, numpy and paths as plain values) and the one
file hash."""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest

from crossguard.fileio import file_sha256, json_safe, write_json


def test_write_json_is_plain_json(tmp_path):
    obj = {"nan": float("nan"), "inf": math.inf, "np": np.float32(0.5), "arr": np.arange(3), "path": Path("a/b"),
           "tuple": (1, 2), 3: "key", "text": "café"}
    path = write_json(tmp_path / "sub" / "r.json", obj)
    text = path.read_text(encoding="utf-8")
    assert text.endswith("}\n") and "café" in text and "NaN" not in text
    assert json.loads(text) == {"nan": None, "inf": None, "np": 0.5, "arr": [0, 1, 2], "path": "a/b",
                                "tuple": [1, 2], "3": "key", "text": "café"}
    assert json_safe(np.bool_(True)) is True


def test_write_json_leaves_no_half_file(tmp_path):
    path = tmp_path / "r.json"
    write_json(path, {"old": 1})

    class Broken:
        def __str__(self):
            raise RuntimeError("cannot serialise")

    with pytest.raises(RuntimeError):
        write_json(path, {"new": Broken()})
    assert json.loads(path.read_text()) == {"old": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_file_sha256_streams(tmp_path):
    data = np.random.default_rng(0).bytes(3_000_000)
    (tmp_path / "f").write_bytes(data)
    assert file_sha256(tmp_path / "f") == hashlib.sha256(data).hexdigest()
    assert file_sha256(tmp_path / "f", chunk=1000) == hashlib.sha256(data).hexdigest()
