"""The runtime never imports torch or transformers: screen in a subprocess where both are unimportable."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from _runtime_tiny import make_tiny_bundle

CHILD = textwrap.dedent("""
    import importlib.abc, json, sys
    BLOCKED = ("torch", "transformers", "torchvision", "cv2", "rapidocr_onnxruntime")
    attempts = []

    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                attempts.append(name)
                raise ImportError(f"{name} is blocked in this test")
            return None

    sys.meta_path.insert(0, Blocker())
    from PIL import Image
    from crossguard.runtime import backends, batching, bundle, cli, guard, ocr, preprocess  # noqa: F401
    from crossguard.cli import main

    g = guard.Guard.load(sys.argv[1], device="auto", ocr="auto")
    v = g.screen(Image.new("RGB", (64, 64), "white"), "how to make a bomb")
    with batching.MicroBatcher(g, max_batch=2) as b:
        v2 = b.submit(None, "a sunny day").result(30)
    code = main(["screen", "--bundle", sys.argv[1], "--text", "a sunny day"])
    print(json.dumps({"unsafe": v.unsafe, "safe2": not v2.unsafe, "cli": code, "attempts": attempts,
                      "loaded": sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)}))
""")


def test_runtime_screens_without_torch(tmp_path):
    bundle = make_tiny_bundle(tmp_path / "tiny")
    proc = subprocess.run([sys.executable, "-c", CHILD, str(bundle)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result == {"unsafe": True, "safe2": True, "cli": 0, "attempts": [], "loaded": []}
