"""Which HTTP stack should serve the guard: the standard library server of ``crossguard serve`` or uvicorn +
starlette, under the same load in the same run.

    python -m crossguard.benchmarks.http_stack --clients 8 --duration 20 --rounds 2

Each stack serves ``POST /v1/screen`` from its own subprocess with the same ``FakeGuard`` (no inference: the HTTP
layer is what is measured) and the same request handling (strict JSON, base64 and image decoding, text checks,
``Screener``); ``server_load.run_load`` drives it from this process with N keep-alive clients. Rounds alternate the
stacks (A B A B ...) so drift on a shared machine hits both. Prints a table and writes JSON
(``--out``, default ``artifacts/bench/http_stack.json``). The uvicorn side needs the ``serve`` extra.
"""
from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from .server_load import FakeGuard, report_rounds, run_load, summarize_rounds

STACKS = ("stdlib", "uvicorn")


def _screen_json(body: bytes, screener, limits) -> dict:
    """What ``/v1/screen`` does with a JSON body, without an HTTP layer (the uvicorn side's handler)."""
    from crossguard.runtime.preprocess import check_text, load_image
    from crossguard.runtime.proxy import decode_base64_image, parse_json

    obj = parse_json(body)
    text = check_text(obj["text"])
    image = obj.get("image")
    image = load_image(decode_base64_image(image, limits.max_bytes), limits) if image is not None else None
    return screener.screen([(image, text)], 60.0)[0].to_dict()


def serve_uvicorn(port: int, delay_ms: float) -> None:
    """uvicorn (httptools, uvloop) + starlette; the sync endpoint runs in starlette's thread pool."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from crossguard.runtime.httpconn import RequestError, api_error
    from crossguard.runtime.preprocess import ImageLimits, InputError
    from crossguard.runtime.server import Screener

    screener, limits = Screener(FakeGuard(delay_ms=delay_ms), max_batch=1), ImageLimits()

    async def screen(request: Request) -> JSONResponse:
        from starlette.concurrency import run_in_threadpool

        body = await request.body()
        try:
            return JSONResponse(await run_in_threadpool(_screen_json, body, screener, limits))
        except RequestError as e:
            return JSONResponse(api_error(e.code, e.message), status_code=e.status)
        except InputError as e:
            return JSONResponse(api_error(e.code, str(e)), status_code=400)

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    app = Starlette(routes=[Route("/v1/screen", screen, methods=["POST"]), Route("/healthz", healthz)])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", loop="uvloop", http="httptools",
                timeout_keep_alive=5)


def serve_stdlib(port: int, delay_ms: float) -> None:
    from crossguard.runtime.server import GuardServer, ServerConfig

    GuardServer(FakeGuard(delay_ms=delay_ms), ServerConfig(port=port, max_connections=128), max_batch=1).serve_forever()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(stack: str, delay_ms: float) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "crossguard.benchmarks.http_stack", "--serve", stack,
                             "--port", str(port), "--fake-delay-ms", str(delay_ms)])
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=1) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"the {stack} server did not start")


def compare(clients: int, duration_s: float, rounds: int, delay_ms: float, warmup_s: float = 2.0) -> dict:
    runs: dict[str, list[dict]] = {s: [] for s in STACKS}
    for r in range(rounds):
        for stack in STACKS if r % 2 == 0 else STACKS[::-1]:
            proc, url = _start(stack, delay_ms)
            try:
                run_load(url, clients=clients, requests=200, duration_s=warmup_s)
                runs[stack].append(run_load(url, clients=clients, requests=10**9, duration_s=duration_s))
            finally:
                proc.terminate()
                proc.wait(10)
    summary = summarize_rounds(runs)
    ratio = summary["uvicorn"]["throughput_rps"] / summary["stdlib"]["throughput_rps"]
    return {"clients": clients, "duration_s": duration_s, "rounds": rounds, "fake_delay_ms": delay_ms,
            "stacks": summary, "uvicorn_over_stdlib_rps": round(ratio, 3)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--serve", choices=STACKS, help=argparse.SUPPRESS)  # internal: run one server
    p.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--fake-delay-ms", type=float, default=0.0, help="FakeGuard's simulated inference time")
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--duration", type=float, default=20.0, help="seconds of load per stack and round")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--out", type=Path, default=Path("artifacts/bench/http_stack.json"))
    args = p.parse_args(argv)
    if args.serve:
        (serve_uvicorn if args.serve == "uvicorn" else serve_stdlib)(args.port, args.fake_delay_ms)
        return 0
    result = compare(args.clients, args.duration, args.rounds, args.fake_delay_ms)
    report_rounds(result["stacks"], "uvicorn / stdlib", result["uvicorn_over_stdlib_rps"], args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
