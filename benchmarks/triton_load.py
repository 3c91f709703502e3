"""``crossguard serve`` (the standard-library server) next to ``crossguard serve --engine triton`` (PyTriton), under
the same load in the same run, with the same guard object.

    .venv-triton/bin/python -m crossguard.benchmarks.triton_load --clients 8 --duration 20 --rounds 2

Loads the guard once (the default bundle, or ``--fake``), starts both engines with the same micro-batch settings,
and drives each with N clients posting the four ``server_load`` bodies (text only and image+text): HTTP
``/v1/screen`` for the stdlib server, ``tritonclient.http`` for Triton. Rounds alternate the order. Prints a table
and writes JSON (``--out``, default ``artifacts/bench/triton_load.json``). Needs ``./setup.sh --triton``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .server_load import FakeGuard, report_rounds, run_load, summarize_rounds


def compare(guard, clients: int, duration_s: float, rounds: int, max_batch: int, max_wait_ms: float,
            instances: int, port: int) -> dict:
    from crossguard.runtime import triton_engine
    from crossguard.runtime.server import GuardServer, ServerConfig

    server = GuardServer(guard, ServerConfig(port=0, max_connections=4 * clients), max_batch=max_batch,
                         max_wait_ms=max_wait_ms).start()
    triton = triton_engine.start(guard, port=port, max_batch=max_batch, max_wait_ms=max_wait_ms, instances=instances)
    engines = {"stdlib": (server.url, None), "triton": (f"http://127.0.0.1:{port}", triton_engine.TritonScreenClient)}
    runs: dict[str, list[dict]] = {name: [] for name in engines}
    try:
        for r in range(rounds):
            for name in list(engines) if r % 2 == 0 else list(engines)[::-1]:
                url, factory = engines[name]
                kwargs = {"client_factory": factory} if factory else {}
                run_load(url, clients=clients, requests=8 * clients, duration_s=5.0, **kwargs)  # warm-up
                runs[name].append(run_load(url, clients=clients, requests=10**9, duration_s=duration_s, **kwargs))
    finally:
        triton.stop()
        server.stop()
    summary = summarize_rounds(runs)
    return {"clients": clients, "duration_s": duration_s, "rounds": rounds, "max_batch": max_batch,
            "max_wait_ms": max_wait_ms, "triton_instances": instances, "engines": summary,
            "triton_over_stdlib_rps": round(summary["triton"]["throughput_rps"] / summary["stdlib"]["throughput_rps"], 3)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--fake", action="store_true", help="FakeGuard instead of the bundle (measures serving only)")
    p.add_argument("--fake-delay-ms", type=float, default=2.0)
    p.add_argument("--bundle", default=None)
    p.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads")
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--duration", type=float, default=20.0, help="seconds of load per engine and round")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--max-batch", type=int, default=8)
    p.add_argument("--max-wait-ms", type=float, default=5.0)
    p.add_argument("--triton-instances", type=int, default=1)
    p.add_argument("--triton-port", type=int, default=8010, help="Triton HTTP port (gRPC +1, metrics +2)")
    p.add_argument("--out", type=Path, default=Path("artifacts/bench/triton_load.json"))
    args = p.parse_args(argv)
    if args.fake:
        guard = FakeGuard(delay_ms=args.fake_delay_ms)
    else:
        from crossguard.runtime.guard import Guard

        guard = Guard.load(args.bundle, device="cpu", threads=args.threads)
    result = compare(guard, args.clients, args.duration, args.rounds, args.max_batch, args.max_wait_ms,
                     args.triton_instances, args.triton_port)
    result["guard"] = "fake" if args.fake else "bundle"
    report_rounds(result["engines"], "triton / stdlib", result["triton_over_stdlib_rps"], args.out, result)
    return 0 if all(s["errors"] == 0 and s["lost"] == 0 for s in result["engines"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
