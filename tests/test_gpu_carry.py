"""tools/gpu/gpu_carry.sh: a folder packed into parts, stashed part by part, unpacked byte for byte."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[1] / "tools" / "gpu" / "gpu_carry.sh"


@pytest.mark.skipif(shutil.which("zstd") is None or shutil.which("split") is None, reason="needs zstd and split")
def test_pack_stash_unpack_round_trip(tmp_path):
    payload = tmp_path / "payload"
    (payload / "sub").mkdir(parents=True)
    data = os.urandom(2_500_000)
    (payload / "sub" / "weights.bin").write_bytes(data)
    (payload / "note.txt").write_text("hello")
    here = tmp_path / "repo"
    here.mkdir()
    env = {**os.environ, "PART_BYTES": "1000000", "CG_STASH": str(tmp_path / "stash")}
    run = lambda *args: subprocess.run(["bash", str(SCRIPT), *args], cwd=here, env=env, capture_output=True,  # noqa: E731
                                       text=True, timeout=120)
    packed = run("pack", str(payload))
    assert packed.returncode == 0, packed.stderr
    parts = sorted(p.name for p in (here / ".gpu").glob("part.*"))
    assert parts == ["part.00", "part.01", "part.02"] and (here / ".gpu" / "bin" / "zstd").is_file()
    assert run("stash").returncode == 0
    done = run("unpack")
    assert done.returncode == 0, done.stderr
    out = tmp_path / "stash" / "x"
    assert (out / "sub" / "weights.bin").read_bytes() == data and (out / "note.txt").read_text() == "hello"
    (here / ".gpu" / "part.01").write_bytes(b"torn")  # a damaged part is refused, nothing extracted
    (tmp_path / "stash" / "part.01").write_bytes(b"torn")
    assert run("unpack").returncode != 0
    assert run("bogus").returncode == 2
