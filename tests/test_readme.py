"""The README's Python example runs as written (against a tiny bundle through $CROSSGUARD_BUNDLE), and the README
stays a user's document (under ~200 lines)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from _runtime_tiny import make_tiny_bundle

ROOT = Path(__file__).resolve().parent.parent


def _python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_readme_python_example_runs(tmp_path):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    (block,) = _python_blocks(readme)
    bundle = make_tiny_bundle(tmp_path / "bundle")
    env = {**os.environ, "CROSSGUARD_BUNDLE": str(bundle)}
    done = subprocess.run([sys.executable, "-c", block], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    first = done.stdout.split()
    assert first[0] in ("True", "False") and 0.0 <= float(first[1]) <= 1.0


def test_readme_is_short():
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= 210
