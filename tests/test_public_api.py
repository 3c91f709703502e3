"""The public API: ``from crossguard import Guard, Verdict, InputError`` (and from ``crossguard.runtime``), imported
lazily: ``import crossguard`` loads neither ONNX Runtime nor torch, and using ``Guard`` loads no torch."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from _runtime_tiny import make_tiny_bundle

CHILD = textwrap.dedent("""
    import importlib.abc, json, sys

    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("torch", "transformers"):
                raise ImportError(f"{name} is blocked in this test")
            return None

    sys.meta_path.insert(0, Blocker())
    import crossguard
    after_import = sorted(m for m in ("onnxruntime", "crossguard.runtime.guard") if m in sys.modules)
    from crossguard import Guard, Verdict, InputError
    from crossguard.runtime import Guard as RuntimeGuard
    v = Guard.load(sys.argv[1], device="cpu", ocr="off").screen(None, "how to make a bomb")
    try:
        Guard.load(sys.argv[1], device="cpu", ocr="off").screen(None, 42)
        raised = False
    except InputError:
        raised = True
    print(json.dumps({"after_import": after_import, "same": RuntimeGuard is Guard, "verdict": isinstance(v, Verdict),
                      "unsafe": v.unsafe, "raised": raised, "all": crossguard.__all__,
                      "torch": [m for m in sys.modules if m.split(".")[0] in ("torch", "transformers")]}))
""")


def test_public_names_import_lazily_and_without_torch(tmp_path):
    bundle = make_tiny_bundle(tmp_path / "tiny")
    proc = subprocess.run([sys.executable, "-c", CHILD, str(bundle)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got == {"after_import": [], "same": True, "verdict": True, "unsafe": True, "raised": True,
                   "all": ["Guard", "Verdict", "InputError", "BundleError", "__version__"], "torch": []}


def test_unknown_names_are_attribute_errors():
    import pytest

    import crossguard
    import crossguard.runtime

    with pytest.raises(AttributeError):
        crossguard.NoSuchThing  # noqa: B018
    with pytest.raises(AttributeError):
        crossguard.runtime.NoSuchThing  # noqa: B018
    assert {"Guard", "Verdict"} <= set(dir(crossguard))
