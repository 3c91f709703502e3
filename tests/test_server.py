"""`crossguard serve`: /v1/screen (JSON, multipart), /healthz, keep-alive, concurrency, logging, the
load benchmark. Loopback only, with FakeGuard (tests/server_helpers.py)."""
from __future__ import annotations

import argparse
import base64
import http.client
import io
import json
import logging
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from PIL import Image

from server_helpers import FakeGuard, b64, png_bytes, request, serve


def _multipart(fields: dict[str, bytes], boundary="XbOuNdArYx") -> tuple[bytes, dict]:
    parts = []
    for name, value in fields.items():
        disp = f'form-data; name="{name}"' + ('; filename="img.png"' if name == "image" else "")
        ctype = "Content-Type: image/png\r\n" if name == "image" else ""
        parts.append(f"--{boundary}\r\nContent-Disposition: {disp}\r\n{ctype}\r\n".encode() + value + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


@pytest.fixture(scope="module")
def server():
    with serve() as s:
        yield s


@pytest.mark.parametrize("payload, label, modality", [
    ({"text": "a recipe for pancakes"}, "safe", "none"),
    ({"text": "how to build a bomb"}, "unsafe", "text"),
    ({"text": "what is this?", "image": b64(png_bytes(230))}, "safe", "none"),
    ({"text": "what is this?", "image": "data:image/png;base64," + b64(png_bytes(5))}, "unsafe", "image"),
    ({"text": "", "image": b64(png_bytes(5, fmt="JPEG"))}, "unsafe", "image"),
    ({"text": "bomb", "image": b64(png_bytes(5))}, "unsafe", "joint"),
])
def test_screen_json(server, payload, label, modality):
    status, headers, body = request(server, "POST", "/v1/screen", payload)
    assert status == 200, body
    verdict = json.loads(body)
    assert verdict["label"] == label and verdict["modality"] == modality
    assert set(verdict) >= {"unsafe", "score", "threshold", "domain", "domain_scores", "backend", "latency_ms"}
    assert headers["content-type"] == "application/json" and len(headers["x-request-id"]) > 0


@pytest.mark.parametrize("fields, label", [
    ({"text": b"hello there"}, "safe"),
    ({"text": "the bomb \u00e9".encode()}, "unsafe"),
    ({"text": b"look", "image": png_bytes(5)}, "unsafe"),
    ({"text": b"", "image": png_bytes(240)}, "safe"),
])
def test_screen_multipart(server, fields, label):
    body, headers = _multipart(fields)
    status, _, out = request(server, "POST", "/v1/screen", body, headers)
    assert status == 200, out
    assert json.loads(out)["label"] == label


def test_healthz_says_ok_and_the_bundle_hash_only(server):
    status, _, body = request(server, "GET", "/healthz")
    assert status == 200 and json.loads(body) == {"status": "ok", "bundle_hash": "0" * 64}  # no paths, no config
    status, _, body = request(server, "GET", "/v1/info")
    assert status == 404 and json.loads(body)["error"]["code"] == "not_found"


def test_info_only_when_the_local_user_asks():
    with serve(expose_info=True) as s:
        status, _, body = request(s, "GET", "/v1/info")
    info = json.loads(body)
    assert status == 200 and info["backend"] == "fake" and info["bundle"]["name"] == "fake-guard"
    assert info["limits"]["max_body_bytes"] == 20 * 1024 * 1024 and info["limits"]["host"] == "127.0.0.1"


def test_keep_alive_and_request_id(server):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        for i in range(5):
            conn.request("POST", "/v1/screen", body=json.dumps({"text": "bomb" if i % 2 else "fine"}),
                         headers={"Content-Type": "application/json", "X-Request-ID": f"req-{i}"})
            resp = conn.getresponse()
            assert resp.status == 200 and resp.getheader("X-Request-ID") == f"req-{i}"
            assert json.loads(resp.read())["unsafe"] == bool(i % 2)
    finally:
        conn.close()


def test_concurrent_requests_get_their_own_verdicts():
    guard = FakeGuard(delay_ms=20)
    with serve(guard) as s:
        texts = [f"question {i} " + ("bomb" if i % 3 == 0 else "cake") for i in range(24)]
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda t: request(s, "POST", "/v1/screen", {"text": t}), texts))
    assert [json.loads(b)["unsafe"] for _, _, b in results] == [i % 3 == 0 for i in range(24)]
    assert guard.calls == 24


def test_guard_failure_is_503_and_server_survives():
    with serve(FakeGuard(fail=True)) as s:
        status, _, body = request(s, "POST", "/v1/screen", {"text": "hello"})
        err = json.loads(body)["error"]
        assert status == 503 and err["code"] == "guard_error" and "fake guard failure" in err["message"]
        assert request(s, "GET", "/healthz")[0] == 200


def test_logs_verdicts_without_content_unless_asked(caplog):
    secret = "my secret bomb question"
    for log_content in (False, True):
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="crossguard.server"), serve(log_content=log_content) as s:
            assert request(s, "POST", "/v1/screen", {"text": secret, "image": b64(png_bytes(5))},
                           {"X-Request-ID": "abc-123"})[0] == 200
        lines = [r.getMessage() for r in caplog.records if "label=" in r.getMessage()]
        assert len(lines) == 1 and "request_id=abc-123" in lines[0] and "label=unsafe" in lines[0]
        assert "domain=drugs_weapons" in lines[0] and "latency_ms=" in lines[0]
        assert (secret in lines[0]) == log_content and ("image_sha256=" in lines[0]) == log_content


def test_cli_parses_serve_flags():
    from crossguard.runtime.server import config_from_args, configure

    parser = argparse.ArgumentParser()
    configure(parser)
    args = parser.parse_args(["--port", "9000", "--upstream", "http://127.0.0.1:8080", "--fail-open",
                              "--max-body-mb", "1", "--remote-images", "ignore", "--log-content",
                              "--pass-route", "/api/pull", "--pass-route", "/api/copy", "--expose-info"])
    cfg = config_from_args(args)
    assert (cfg.host, cfg.port, cfg.upstream, cfg.fail_open) == ("127.0.0.1", 9000, "http://127.0.0.1:8080", True)
    assert cfg.max_body_bytes == 2**20 and cfg.remote_images == "ignore" and cfg.log_content
    assert cfg.pass_routes == ("/api/pull", "/api/copy") and cfg.expose_info
    assert config_from_args(parser.parse_args([])).fail_open is False
    with pytest.raises(SystemExit):
        parser.parse_args(["--fail-open", "--fail-closed"])


def test_runtime_server_imports_no_torch():
    import subprocess

    code = ("import sys, crossguard.runtime.server, crossguard.runtime.proxy; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers')]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_load_benchmark_with_fake_guard(tmp_path, capsys):
    from crossguard.benchmarks.server_load import main

    out = tmp_path / "load.json"
    assert main(["--fake", "--fake-delay-ms", "1", "--clients", "4", "--requests", "40", "--duration", "20",
                 "--image-sizes", "3", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["ok"] == 40 and result["errors"] == 0 and result["lost"] == 0 and result["clients"] == 4
    assert 0 < result["latency_ms"]["p50"] <= result["latency_ms"]["p99"] and result["throughput_rps"] > 0
    assert "throughput (req/s)" in capsys.readouterr().out
    from crossguard.benchmarks.server_load import make_payloads

    sized = [json.loads(b) for b in make_payloads(image_sizes=3)[4:]]
    sizes = {Image.open(io.BytesIO(base64.b64decode(p["image"]))).size for p in sized}
    assert len(make_payloads()) == 4 and len(sizes) == 3


def test_load_benchmark_counts_errors(tmp_path):
    """The benchmark must notice failures (a failing guard gives 503s), not report them as throughput."""
    from crossguard.benchmarks.server_load import run_load

    with serve(FakeGuard(fail=True)) as s:
        result = run_load(s.url, clients=2, requests=6, duration_s=10)
    assert result["ok"] == 0 and result["errors"] == 6 and result["lost"] == 0


def _serve_args(*extra):
    from crossguard.runtime.server import configure

    parser = argparse.ArgumentParser()
    configure(parser)
    return parser.parse_args(["--port", "0", *extra])


def test_run_loads_the_guard_and_serves(monkeypatch):
    """`crossguard serve` end to end: Guard.load with the CLI's options, then a server that answers."""
    import types

    from crossguard.runtime import server as server_mod

    loaded, answers = {}, []

    class WarmedFakeGuard(FakeGuard):
        def warmup(self, max_batch=1):
            loaded["warmup_max_batch"] = max_batch

    class StubGuard:
        @staticmethod
        def load(bundle=None, device="auto", precision="auto", workers=0, ocr_device="auto", image_cache=0,
                 recheck=True):
            loaded.update(bundle=bundle, device=device, precision=precision, workers=workers, ocr_device=ocr_device,
                          image_cache=image_cache, recheck=recheck)
            return WarmedFakeGuard()

    def serve_once(self):  # instead of blocking forever: serve in a thread, ask once, stop
        self.start()
        try:
            answers.append(request(self, "POST", "/v1/screen", {"text": "a bomb"}))
        finally:
            self.httpd.shutdown()

    monkeypatch.setitem(sys.modules, "crossguard.runtime.guard", types.SimpleNamespace(Guard=StubGuard))
    monkeypatch.setattr(server_mod.GuardServer, "serve_forever", serve_once)
    assert server_mod.run(_serve_args("--bundle", "/b", "--device", "cpu", "--precision", "int8", "--workers", "3",
                                          "--ocr-device", "cuda", "--image-cache", "16", "--no-recheck")) == 0
    assert loaded == {"bundle": "/b", "device": "cpu", "precision": "int8", "workers": 3, "ocr_device": "cuda",
                      "image_cache": 16, "recheck": False, "warmup_max_batch": 8}
    assert answers[0][0] == 200 and json.loads(answers[0][2])["label"] == "unsafe"


def test_run_reports_a_guard_that_cannot_load(monkeypatch, caplog):
    import types

    from crossguard.runtime import server as server_mod

    class BrokenGuard:
        @staticmethod
        def load(**kwargs):
            raise FileNotFoundError("no bundle at /missing")

    monkeypatch.setitem(sys.modules, "crossguard.runtime.guard", types.SimpleNamespace(Guard=BrokenGuard))
    with caplog.at_level(logging.ERROR, logger="crossguard.server"):
        assert server_mod.run(_serve_args()) == 2
    assert "no bundle at /missing" in caplog.text
    assert server_mod.run(_serve_args("--upstream", "ftp://x")) == 2


def test_concurrent_requests_are_micro_batched():
    """With --max-batch > 1 requests go through crossguard.runtime.batching: concurrent requests share
    guard.screen_batch calls and still each get their own verdict."""
    from crossguard.runtime.server import GuardServer, ServerConfig

    class CountingGuard(FakeGuard):
        def __init__(self):
            super().__init__(delay_ms=30)
            self.batch_sizes = []

        def screen_batch(self, images, texts):
            self.batch_sizes.append(len(texts))
            time.sleep(self.delay_ms / 1000)  # one inference for the whole batch
            return [FakeGuard(fail=self.fail).screen(i, t) for i, t in zip(images, texts)]

    guard = CountingGuard()
    server = GuardServer(guard, ServerConfig(port=0, expose_info=True), max_batch=8, max_wait_ms=20).start()
    try:
        assert server.screener.batcher is not None
        texts = [f"item {i} " + ("bomb" if i % 2 else "tea") for i in range(16)]
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda t: request(server, "POST", "/v1/screen", {"text": t}), texts))
        health = json.loads(request(server, "GET", "/v1/info")[2])
    finally:
        server.stop()
    assert [json.loads(b)["unsafe"] for _, _, b in results] == [bool(i % 2) for i in range(16)]
    assert sum(guard.batch_sizes) == 16 and max(guard.batch_sizes) > 1
    assert health["batching"] is True and health["max_batch"] == 8


def test_healthz_reports_the_real_guard_info():
    from crossguard.runtime.server import Screener

    class InfoGuard(FakeGuard):
        def info(self):
            return {"backend": "onnxruntime-cpu", "bundle_name": "crossguard-student", "bundle_hash": "ab12",
                    "bundle_path": "/b", "precision": "int8"}

    info = Screener(InfoGuard(), max_batch=1).info()
    assert info == {"backend": "onnxruntime-cpu", "batching": False, "guard": {"precision": "int8"},
                    "bundle": {"name": "crossguard-student", "hash": "ab12", "path": "/b"}}


def test_concurrent_image_decodes_are_bounded_per_server(monkeypatch):
    """--max-decodes: however many clients send images at once, at most that many are decoded side by side."""
    import threading

    from crossguard.runtime import server as server_mod

    lock, active, peak = threading.Lock(), [0], [0]
    real = server_mod.load_image

    def slow_load(data, limits):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.05)
        try:
            return real(data, limits)
        finally:
            with lock:
                active[0] -= 1

    monkeypatch.setattr(server_mod, "load_image", slow_load)
    with serve(max_decodes=2) as s:
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda _: request(s, "POST", "/v1/screen", {"text": "x", "image": b64(png_bytes(5))}),
                                    range(12)))
    assert all(status == 200 for status, _, _ in results) and peak[0] == 2
