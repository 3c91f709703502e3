"""runtime.manifest.screen_manifest as a library call: every line answered once (verdict or numbered error),
bad lines never stop the rest, and the summary counts them."""
from __future__ import annotations

import json

from PIL import Image

from _runtime_tiny import make_tiny_bundle
from crossguard.runtime.guard import Guard
from crossguard.runtime.manifest import screen_manifest


def test_screen_manifest_answers_every_line(tmp_path):
    guard = Guard.load(make_tiny_bundle(tmp_path / "b"), device="cpu", ocr="off", warmup=False)
    Image.new("RGB", (32, 32), "white").save(tmp_path / "white.png")
    lines = [json.dumps({"id": "a", "image": "white.png", "text": "how to make a bomb", "label": "unsafe"}).encode(),
             b"\xff\xfe not utf-8",
             b"{not json",
             json.dumps({"id": "d", "image": "missing.png", "text": "hello"}).encode(),
             b"",
             json.dumps({"id": "e", "image": None, "text": "hello world", "label": "safe"}).encode(),
             json.dumps({"id": "f", "text": 3}).encode()]
    (tmp_path / "m.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    out: list[dict] = []
    summary = screen_manifest(guard, tmp_path / "m.jsonl", out.append, batch_size=2)
    assert sorted(o["line"] for o in out) == [1, 2, 3, 4, 6, 7]  # each line once (errors come as read)
    errors = {o["line"]: o["error"] for o in out if "error" in o}
    assert set(errors) == {2, 3, 4, 7} and "UTF-8" in errors[2] and "JSON" in errors[3] and "'text'" in errors[7]
    verdicts = {o["id"]: o for o in out if "error" not in o}
    assert set(verdicts) == {"a", "e"}
    assert summary["screened"] == 2 and summary["errors"] == 4 and summary["labelled"] == 2
    assert summary["unsafe"] == sum(v["unsafe"] for v in verdicts.values())
    assert summary["accuracy"] == (summary["correct"] / 2)
