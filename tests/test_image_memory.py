"""Images are decoded within a memory budget whatever their bit depth or mode: measured as the peak resident
memory that one ``load_image`` adds, in a fresh subprocess (Pillow's buffers are not seen by tracemalloc)."""
from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

SIDE = 6300  # 39.7 M pixels: just under the default pixel limit
CHILD = textwrap.dedent("""
    import json, resource, sys
    from crossguard.runtime.preprocess import load_image
    data = open(sys.argv[1], "rb").read()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    img = load_image(data)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"added_mb": (after - before) / 1024, "size": img.size, "mode": img.mode,
                      "corner": img.getpixel((0, 0)), "centre": img.getpixel((img.width // 2, img.height // 2))}))
""")


def _png(tmp_path, name: str, img: Image.Image) -> str:
    path = tmp_path / name
    img.save(path, "PNG")
    return str(path)


def _peak(path: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", CHILD, path], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_sixteen_bit_png_at_the_pixel_limit_stays_within_budget(tmp_path):
    """The 16-bit case of issue 26: ~80 KB on disk, 79 MB decoded; widening to float64 at full size added
    ~1.15 GB. The budget is the decoded image (2 bytes a pixel) plus twice that for shrinking."""
    arr = np.full((SIDE, SIDE), 50_000, np.uint16)
    arr[0, 0] = 0  # one outlier: the stretch uses the full image's range, so the rest stays bright
    arr[SIDE // 2 - 200:SIDE // 2 + 200, SIDE // 2 - 200:SIDE // 2 + 200] = 0
    path = _png(tmp_path, "deep.png", Image.fromarray(arr))
    del arr
    got = _peak(path)
    decoded_mb = SIDE * SIDE * 2 / 2**20
    assert got["added_mb"] < 3 * decoded_mb, got  # ~76 MB decoded; ~1,150 MB before the fix
    assert got["size"] == [1600, 1600] and got["mode"] == "RGB"
    assert got["corner"][0] > 200 and got["centre"] == [0, 0, 0]


@pytest.mark.parametrize("mode", ["1", "P", "RGBA"])
def test_other_modes_at_the_pixel_limit_stay_within_budget(tmp_path, mode):
    img = Image.new(mode, (SIDE, SIDE), 1 if mode in ("1", "P") else (0, 0, 0, 255))
    got = _peak(_png(tmp_path, f"big_{mode}.png", img))
    assert got["added_mb"] < 4 * SIDE * SIDE / 2**20 * 1.2, got  # at most about one RGBA copy at full size
    assert got["size"] == [1600, 1600]
