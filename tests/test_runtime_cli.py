"""`crossguard screen`: exit codes 0/1/2, --json, --text-file, --manifest streaming and its summary."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from _runtime_tiny import make_tiny_bundle
from crossguard.cli import main


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return str(make_tiny_bundle(tmp_path_factory.mktemp("cli") / "tiny"))


def screen(bundle, *args):
    return main(["screen", "--bundle", bundle, "--ocr", "off", *args])


def test_exit_codes_and_json(bundle, capsys, tmp_path):
    assert screen(bundle, "--text", "a sunny day") == 0
    assert "SAFE" in capsys.readouterr().out
    assert screen(bundle, "--text", "how to make a bomb", "--json") == 1
    verdict = json.loads(capsys.readouterr().out)
    assert verdict["unsafe"] and verdict["label"] == "unsafe" and verdict["domain"] == "drugs_weapons"
    assert screen(bundle, "--text", "a sunny day", "--threshold", "0.0") == 1  # override: everything unsafe
    img = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(img)
    assert screen(bundle, "--image", str(img), "--text", "a sunny day") == 0
    text_file = tmp_path / "t.txt"
    text_file.write_text("poison the well")
    assert screen(bundle, "--text-file", str(text_file)) == 1


def test_errors_exit_2(bundle, capsys, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    assert screen(bundle, "--image", str(bad), "--text", "x") == 2
    assert "cannot decode image" in capsys.readouterr().err
    assert main(["screen", "--bundle", str(tmp_path / "none"), "--text", "x"]) == 2
    assert "crossguard export --default" in capsys.readouterr().err
    assert screen(bundle) == 2  # nothing to screen
    assert "nothing to screen" in capsys.readouterr().err
    invalid = tmp_path / "latin1.txt"
    invalid.write_bytes(b"caf\xe9")
    assert screen(bundle, "--text-file", str(invalid)) == 2
    assert "UTF-8" in capsys.readouterr().err
    assert screen(bundle, "--text", "x", "--threshold", "1.5") == 2
    with pytest.raises(SystemExit) as e:
        screen(bundle, "--device", "gpu9")
    assert e.value.code == 2


def test_manifest_streams_verdicts(bundle, capsys, tmp_path):
    Image.new("RGB", (32, 32), "red").save(tmp_path / "red.png")
    (tmp_path / "bad.png").write_bytes(b"junk")
    rows = [{"id": "a", "image": "red.png", "text": "a sunny day", "label": "safe"},
            {"id": "b", "image": None, "text": "how to make a bomb", "label": "unsafe"},
            {"id": "c", "image": "bad.png", "text": "x"}]
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("\n".join(json.dumps(r) for r in rows) + "\n{broken\n")
    assert screen(bundle, "--manifest", str(manifest), "--batch-size", "2") == 1
    captured = capsys.readouterr()
    lines = [json.loads(x) for x in captured.out.splitlines()]
    by_id = {x["id"]: x for x in lines}
    assert by_id["a"]["label"] == "safe" and by_id["b"]["label"] == "unsafe"
    assert "cannot decode" in by_id["c"]["error"] and by_id["line-4"]["error"].startswith("not valid JSON")
    summary = json.loads(captured.err.split("summary: ")[1].splitlines()[0])
    assert summary["screened"] == 2 and summary["unsafe"] == 1 and summary["errors"] == 2
    assert summary["accuracy"] == 1.0
    safe_only = tmp_path / "safe.jsonl"
    safe_only.write_text(json.dumps(rows[0]) + "\n")
    assert screen(bundle, "--manifest", str(safe_only)) == 0
    assert screen(bundle, "--manifest", str(tmp_path / "missing.jsonl")) == 2


def test_manifest_bad_lines_are_reported_and_the_rest_screened(bundle, capsys, tmp_path):
    """A non-UTF-8 line, bad JSON or a bad field costs that line only: good rows before and after are screened."""
    (tmp_path / "folder.png").mkdir()
    good = [json.dumps({"id": "first", "text": "a sunny day"}).encode(),
            json.dumps({"id": "last", "text": "how to make a bomb"}).encode()]
    lines = [good[0], b'{"id": "latin1", "text": "caf\xe9"}', b"{broken", json.dumps({"id": "n", "text": 5}).encode(),
             json.dumps({"id": "dir", "image": "folder.png", "text": "x"}).encode(), good[1]]
    manifest = tmp_path / "mixed.jsonl"
    manifest.write_bytes(b"\n".join(lines) + b"\n")
    assert screen(bundle, "--manifest", str(manifest)) == 1
    out = capsys.readouterr()
    by_line = {x["line"]: x for x in map(json.loads, out.out.splitlines())}
    assert by_line[1]["label"] == "safe" and by_line[6]["label"] == "unsafe" and by_line[6]["id"] == "last"
    assert by_line[2]["error"].startswith("not valid UTF-8") and by_line[3]["error"].startswith("not valid JSON")
    assert "'text' must be a string" in by_line[4]["error"] and "is a directory" in by_line[5]["error"]
    summary = json.loads(out.err.split("summary: ")[1].splitlines()[0])
    assert summary["screened"] == 2 and summary["errors"] == 4
