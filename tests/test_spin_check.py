"""benchmarks.spin_check's block timing: every screener gets the same number of calls, in blocks, one untimed
call before each block."""
from __future__ import annotations

from crossguard.benchmarks.spin_check import time_blocks


def test_blocks_call_each_function_alike_and_report_every_name():
    calls: list[str] = []
    fns = {name: (lambda n=name: calls.append(n)) for name in ("a", "b")}
    p50 = time_blocks(fns, blocks=3, calls=4)
    assert set(p50) == {"a", "b"} and all(v >= 0 for v in p50.values())
    assert calls == (["a"] * 5 + ["b"] * 5) * 3
