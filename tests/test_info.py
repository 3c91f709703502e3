"""``crossguard info``: text and JSON output, providers, backbones, default bundle; no torch import."""
from __future__ import annotations

import json
import subprocess
import sys

import onnxruntime as ort

from crossguard import __version__
from crossguard.cli import main


def test_info_text(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("CROSSGUARD_BUNDLE", str(tmp_path / "bundle"))
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert f"crossguard {__version__}" in out
    for provider in ort.get_available_providers():
        assert provider in out
    for backbone in ("text", "image", "ocr", "generator", "nsfw"):
        assert f"\n  {backbone} " in out
    assert str(tmp_path / "bundle") in out and "not built" in out


def test_info_json(capsys, monkeypatch, tmp_path):
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "manifest.json").write_text("{}")
    monkeypatch.setenv("CROSSGUARD_BUNDLE", str(bundle))
    assert main(["info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["crossguard"] == __version__
    assert info["onnxruntime_providers"] == ort.get_available_providers()
    assert info["packages"]["onnxruntime"] == ort.__version__
    assert info["gpu"]["cuda_provider"] == ("CUDAExecutionProvider" in ort.get_available_providers())
    assert set(info["backbones"]) == {"text", "image", "ocr", "generator", "nsfw"}
    assert info["default_bundle"] == {"path": str(bundle), "exists": True, "from_env": True}


def test_info_imports_no_torch():
    code = ("import sys, io, contextlib\n"
            "from crossguard.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    assert main(['info', '--json']) == 0\n"
            "bad = [m for m in ('torch', 'transformers') if m in sys.modules]\n"
            "assert not bad, bad\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
