"""The naive reference graph with ONNX Runtime's default session options (worker threads spin) beside the same
graph with the runtime's options (no spinning) and the guard, on `crossguard bench latency`'s two inputs at batch 1.

    python -m crossguard.benchmarks.spin_check [--bundle B] [--blocks 6] [--calls 25]

Screeners run in alternating blocks of ``--calls`` calls, the first call of each block untimed: a spinning
session's idle workers hold the cores for a while after each call, so calling the screeners in turn would charge
that to whichever runs next. Prints p50 ms and the ratio to the spinning reference.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Callable

from .latency import make_inputs
from .reference import ReferenceScreener


def time_blocks(fns: dict[str, Callable[[], object]], blocks: int, calls: int) -> dict[str, float]:
    """p50 ms of each function over ``blocks`` rounds of ``calls`` timed calls, one untimed call before each."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(blocks):
        for name, fn in fns.items():
            fn()
            for _ in range(calls):
                t0 = time.perf_counter()
                fn()
                times[name].append((time.perf_counter() - t0) * 1e3)
    return {name: statistics.median(t) for name, t in times.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m crossguard.benchmarks.spin_check", description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", default=None, help="guard bundle (default: the default bundle)")
    ap.add_argument("--blocks", type=int, default=6)
    ap.add_argument("--calls", type=int, default=25)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    from crossguard.runtime.guard import Guard

    quiet = ReferenceScreener(threads=args.threads)
    spinning = ReferenceScreener(threads=args.threads, spinning=True)
    guard = Guard.load(args.bundle, device="cpu", threads=args.threads, text_cache=0)
    for kind in ("no-ocr", "ocr"):
        images, texts = make_inputs(kind, 1, 640)
        p50 = time_blocks({"reference, runtime options (no spinning)": lambda: quiet.screen(images[0], texts[0]),
                           "reference, ONNX Runtime defaults (spinning)": lambda: spinning.screen(images[0], texts[0]),
                           f"guard {guard.graphs.backend}": lambda: guard.screen(images[0], texts[0])},
                          args.blocks, args.calls)
        base = p50["reference, ONNX Runtime defaults (spinning)"]
        for name, ms in p50.items():
            print(f"{kind:7s} {name:45s} p50 {ms:6.1f} ms  {ms / base:.2f}x the spinning reference")
    return 0


if __name__ == "__main__":
    sys.exit(main())
