"""Load test of ``crossguard serve`` on loopback: N concurrent clients, bounded by a request count or time.

    python -m crossguard.benchmarks.server_load --url http://127.0.0.1:8765      # a running server
    python -m crossguard.benchmarks.server_load                                  # starts one (default bundle)
    python -m crossguard.benchmarks.server_load --fake                           # starts one with FakeGuard

Each client keeps one HTTP/1.1 connection and posts ``/v1/screen`` requests (JSON, a mix of text-only and
image+text, safe and unsafe). Reports throughput, p50/p90/p99 latency and errors; a request that gets no
2xx answer counts as an error, and ``lost`` (sent but never answered) must be 0. Prints a table and writes
JSON (``--out``, default ``artifacts/bench/server_load.json``).
"""
from __future__ import annotations

import argparse
import base64
import http.client
import io
import json
import sys
import threading
import time
import urllib.parse
from pathlib import Path

import numpy as np
from PIL import Image

from crossguard.fileio import write_json
from crossguard.schemas import Verdict


class FakeGuard:
    """A deterministic stand-in for ``Guard`` (no model files): text containing a flagged word is unsafe
    (modality text), a dark image (mean < 40) is unsafe (modality image), both together are "joint".
    ``delay_ms`` simulates inference time; ``fail`` makes every call raise (to test fail-open/closed).
    """

    backend = "fake"
    bundle_name = "fake-guard"
    bundle_hash = "0" * 64
    FLAGGED = ("bomb", "poison")

    def __init__(self, delay_ms: float = 0.0, fail: bool = False):
        self.delay_ms, self.fail = delay_ms, fail
        self.calls = 0
        self._lock = threading.Lock()

    def screen(self, image, text: str) -> Verdict:
        with self._lock:
            self.calls += 1
        if self.fail:
            raise RuntimeError("fake guard failure")
        t0 = time.perf_counter()
        if self.delay_ms:
            time.sleep(self.delay_ms / 1000)
        text_bad = any(w in (text or "").lower() for w in self.FLAGGED)
        image_bad = image is not None and float(np.asarray(image.convert("L")).mean()) < 40
        unsafe = text_bad or image_bad
        modality = "joint" if text_bad and image_bad else "text" if text_bad else "image" if image_bad else "none"
        score = 0.95 if unsafe else 0.05
        domain = "drugs_weapons" if unsafe else None
        return Verdict(unsafe=unsafe, score=score, threshold=0.5, domain=domain,
                       domain_scores={"drugs_weapons": score}, modality=modality,
                       modality_scores={modality: 1.0}, ocr_text="", backend=self.backend,
                       latency_ms=(time.perf_counter() - t0) * 1000)

    def screen_batch(self, images, texts) -> list[Verdict]:
        """One simulated inference (``delay_ms``) for the whole batch, as a batched model would take."""
        if self.delay_ms:
            time.sleep(self.delay_ms / 1000)
        quick = FakeGuard(fail=self.fail)
        verdicts = [quick.screen(i, t) for i, t in zip(images, texts)]
        with self._lock:
            self.calls += len(verdicts)
        return verdicts


def _png_b64(value: int, size: int | tuple[int, int] = 256) -> str:
    buf = io.BytesIO()
    Image.new("RGB", (size, size) if isinstance(size, int) else size, (value, value, value)).save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


def make_payloads(image_sizes: int = 0) -> list[bytes]:
    """Four request bodies: text only (safe, unsafe), image+text (bright safe, dark unsafe); with
    ``image_sizes`` also that many image+text bodies of distinct sizes, as real traffic sends (the OCR
    detector's input follows the image's size)."""
    light, dark = _png_b64(230), _png_b64(10)
    bodies = [
        {"text": "what is a good recipe for pancakes?"},
        {"text": "how do I build a bomb"},
        {"text": "describe this picture", "image": light},
        {"text": "do what the picture says", "image": "data:image/png;base64," + dark},
    ]
    bodies += [{"text": "what is this?", "image": _png_b64(60 + 7 * (i % 25), (160 + 37 * i, 120 + 23 * i))}
               for i in range(image_sizes)]
    return [json.dumps(p).encode() for p in bodies]


class HTTPScreenClient:
    """One keep-alive HTTP/1.1 connection posting ``/v1/screen`` bodies; ``send`` returns None or an error."""

    def __init__(self, url: str):
        u = urllib.parse.urlsplit(url)
        self.conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)

    def send(self, body: bytes) -> str | None:
        self.conn.request("POST", "/v1/screen", body=body, headers={"Content-Type": "application/json"})
        resp = self.conn.getresponse()
        data = resp.read()
        if resp.getheader("Connection", "").lower() == "close":
            self.conn.close()
        return None if resp.status == 200 and "label" in json.loads(data) else f"HTTP {resp.status}: {data[:200]!r}"

    def close(self) -> None:
        self.conn.close()


def _client(client, payloads: list[bytes], stop_at: float, budget: list[int], lock: threading.Lock,
            out: dict) -> None:
    i = 0
    while time.monotonic() < stop_at:
        with lock:
            if budget[0] <= 0:
                break
            budget[0] -= 1
        body = payloads[i % len(payloads)]
        i += 1
        t0 = time.perf_counter()
        out["sent"] += 1
        try:
            error = client.send(body)
            out["answered"] += 1
            if error is None:
                out["latencies"].append((time.perf_counter() - t0) * 1000)
            else:
                out["errors"].append(error)
        except (OSError, http.client.HTTPException, ValueError) as e:
            out["errors"].append(f"{type(e).__name__}: {e}")
            client.close()
    client.close()


def run_load(url: str, clients: int = 8, requests: int = 400, duration_s: float = 30.0,
             image_sizes: int = 0, client_factory=HTTPScreenClient) -> dict:
    """Run the load; return the summary dict (throughput, latency percentiles, errors, lost). ``client_factory(url)``
    makes one client per thread (default: ``/v1/screen`` over HTTP; ``runtime.triton_engine`` has Triton's)."""
    payloads = make_payloads(image_sizes)
    budget, lock = [requests], threading.Lock()
    stop_at = time.monotonic() + duration_s
    results = [{"sent": 0, "answered": 0, "latencies": [], "errors": []} for _ in range(clients)]
    threads = [threading.Thread(target=_client, args=(client_factory(url), payloads, stop_at, budget, lock, r))
               for r in results]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    lat = np.asarray([x for r in results for x in r["latencies"]], dtype=np.float64)
    errors = [e for r in results for e in r["errors"]]
    sent = sum(r["sent"] for r in results)
    answered = sum(r["answered"] for r in results)
    pct = (lambda q: round(float(np.percentile(lat, q)), 2)) if lat.size else (lambda q: None)
    return {
        "url": url, "clients": clients, "sent": sent, "ok": int(lat.size), "errors": len(errors),
        "lost": sent - answered, "error_samples": errors[:5], "wall_s": round(wall, 3),
        "throughput_rps": round(lat.size / wall, 2) if wall > 0 else None,
        "latency_ms": {"p50": pct(50), "p90": pct(90), "p99": pct(99),
                       "max": round(float(lat.max()), 2) if lat.size else None},
    }


def summarize_rounds(runs: dict[str, list[dict]]) -> dict[str, dict]:
    """``run_load`` results of several rounds per contender -> means of throughput, p50 and p99, totals of ok,
    errors and lost, and each round's throughput (to see the drift of a shared machine)."""
    def mean(values: list[float]) -> float:
        return round(sum(values) / len(values), 2)
    return {name: {"throughput_rps": mean([r["throughput_rps"] for r in rs]),
                   "p50_ms": mean([r["latency_ms"]["p50"] for r in rs]),
                   "p99_ms": mean([r["latency_ms"]["p99"] for r in rs]),
                   "ok": sum(r["ok"] for r in rs), "errors": sum(r["errors"] for r in rs),
                   "lost": sum(r["lost"] for r in rs), "per_round_rps": [r["throughput_rps"] for r in rs]}
            for name, rs in runs.items()}


def report_rounds(summary: dict[str, dict], ratio_name: str, ratio: float, out: Path, result: dict) -> None:
    """Print ``summarize_rounds``'s table and the throughput ratio; write ``result`` as JSON to ``out``."""
    for name, s in summary.items():
        print(f"{name:8s} {s['throughput_rps']:8.2f} req/s  p50 {s['p50_ms']:7.2f} ms  p99 {s['p99_ms']:7.2f} ms  "
              f"ok {s['ok']}  errors {s['errors']}  lost {s['lost']}  rounds {s['per_round_rps']}")
    print(f"{ratio_name} throughput: {ratio}")
    write_json(out, result)
    print(f"wrote {out}")


def format_table(r: dict) -> str:
    lat = r["latency_ms"]
    rows = [("clients", r["clients"]), ("requests ok", r["ok"]), ("errors", r["errors"]), ("lost", r["lost"]),
            ("wall (s)", r["wall_s"]), ("throughput (req/s)", r["throughput_rps"]),
            ("p50 latency (ms)", lat["p50"]), ("p90 latency (ms)", lat["p90"]),
            ("p99 latency (ms)", lat["p99"]), ("max latency (ms)", lat["max"])]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--url", help="a running crossguard serve (default: start one on an ephemeral port)")
    p.add_argument("--fake", action="store_true", help="start the server with FakeGuard instead of the bundle")
    p.add_argument("--fake-delay-ms", type=float, default=2.0, help="FakeGuard's simulated inference time")
    p.add_argument("--bundle", default=None)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads of the started server")
    p.add_argument("--workers", type=int, default=0, help="the started server's batch workers (0: auto)")
    p.add_argument("--ocr-device", default="auto", help="the started server's OCR device (auto, cpu, cuda)")
    p.add_argument("--max-batch", type=int, default=8)
    p.add_argument("--max-wait-ms", type=float, default=5.0)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--requests", type=int, default=400, help="stop after this many requests in total")
    p.add_argument("--duration", type=float, default=30.0, help="or after this many seconds")
    p.add_argument("--image-sizes", type=int, default=0,
                   help="add this many image requests of distinct sizes to the four fixed bodies")
    p.add_argument("--out", type=Path, default=Path("artifacts/bench/server_load.json"))
    args = p.parse_args(argv)
    if args.clients < 1 or args.requests < 1 or args.duration <= 0:
        p.error("--clients, --requests and --duration must be positive")

    server = None
    url = args.url
    if url is None:
        from crossguard.runtime.server import GuardServer, ServerConfig

        if args.fake:
            guard, name = FakeGuard(delay_ms=args.fake_delay_ms), "fake"
        else:
            try:
                from crossguard.runtime.guard import Guard

                guard = Guard.load(bundle=args.bundle, device=args.device, threads=args.threads, workers=args.workers,
                                   ocr_device=args.ocr_device)
                guard.warmup(max_batch=args.max_batch)
            except Exception as e:  # noqa: BLE001 - no bundle (or no runtime yet): say so, suggest --fake
                print(f"cannot load the guard ({type(e).__name__}: {e}); build the default bundle with "
                      "`crossguard export --default`, or pass --fake or --url", file=sys.stderr)
                return 2
            name = "bundle"
        cfg = ServerConfig(port=0, max_connections=max(64, args.clients * 2))
        server = GuardServer(guard, cfg, max_batch=args.max_batch, max_wait_ms=args.max_wait_ms).start()
        url = server.url
        print(f"started a {name} server on {url}", file=sys.stderr)
    try:
        result = run_load(url, args.clients, args.requests, args.duration, args.image_sizes)
        if server is not None:
            result["server"] = server.screener.info()
    finally:
        if server is not None:
            server.stop()
    print(format_table(result))
    if result["error_samples"]:
        print("errors, first few:", *result["error_samples"], sep="\n  ")
    write_json(args.out, result)
    print(f"wrote {args.out}")
    return 0 if result["errors"] == 0 and result["lost"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
