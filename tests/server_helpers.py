"""Shared by the server/proxy tests: a running server on an ephemeral loopback port, a fake upstream,
raw-socket and HTTP helpers. The guard is ``FakeGuard`` (crossguard.benchmarks.server_load): text with
"bomb" or a dark image is unsafe; no model files are needed."""
from __future__ import annotations

import base64
import contextlib
import http.client
import http.server
import io
import json
import socket
import threading

from PIL import Image

from crossguard.benchmarks.server_load import FakeGuard
from crossguard.runtime.server import GuardServer, ServerConfig

__all__ = ["FakeGuard", "serve", "FakeUpstream", "request", "raw_exchange", "png_bytes", "b64", "healthy"]


@contextlib.contextmanager
def serve(guard=None, **config):
    """A GuardServer with FakeGuard on 127.0.0.1:<ephemeral>, small timeouts; yields the server."""
    defaults = dict(port=0, header_timeout_s=2.0, body_timeout_s=2.0, keepalive_timeout_s=1.0,
                    write_timeout_s=5.0, screen_timeout_s=5.0, upstream_timeout_s=10.0)
    server = GuardServer(guard or FakeGuard(), ServerConfig(**dict(defaults, **config)), max_batch=1)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def request(server, method, path, body=None, headers=None, timeout=5.0):
    """One request on a fresh connection -> (status, headers dict (lower-case keys), body bytes)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)
    try:
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            headers = dict({"Content-Type": "application/json"}, **(headers or {}))
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def raw_exchange(port, data: bytes, timeout=5.0) -> bytes:
    """Send raw bytes, read until the server closes (or timeout); return everything received."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        try:
            while chunk := s.recv(65536):
                chunks.append(chunk)
        except (socket.timeout, ConnectionResetError):
            pass
        return b"".join(chunks)


def parse_raw_response(raw: bytes) -> tuple[int, dict]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body) if body else {}


def healthy(server) -> bool:
    status, _, body = request(server, "GET", "/healthz")
    return status == 200 and json.loads(body)["status"] == "ok"


def png_bytes(value=230, size=(64, 64), mode="RGB", fmt="PNG") -> bytes:
    buf = io.BytesIO()
    fill = value if mode in ("L", "I;16", "I", "1") else tuple([value] * len(mode))
    Image.new(mode, size, fill).save(buf, fmt)
    return buf.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class FakeUpstream:
    """A loopback stand-in for llama.cpp/Ollama/vLLM: records every request; chat completions echo the body
    (or stream three SSE chunks, the second only after ``release`` is set, to prove incremental
    pass-through); ``GET /v1/models`` answers a model list."""

    def __init__(self):
        self.requests: list[dict] = []
        self.release = threading.Event()
        self.released_in_time: bool | None = None
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _record(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                outer.requests.append({"method": self.command, "path": self.path,
                                       "headers": dict(self.headers.items()), "body": body})
                return body

            def do_GET(self, recorded=False):
                if not recorded:
                    self._record()
                data = json.dumps({"object": "list", "data": [{"id": "fake-model"}], "path": self.path}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("X-Upstream", "yes")
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                body = self._record()
                if not self.path.endswith("/chat/completions"):
                    return self.do_GET(recorded=True)
                if json.loads(body).get("stream"):
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    for i, word in enumerate(["Hello", " there", "!"]):
                        if i == 1:
                            outer.released_in_time = outer.release.wait(2.0)
                        event = {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": word}}]}
                        data = b"data: " + json.dumps(event).encode() + b"\n\n"
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                        self.wfile.flush()
                    done = b"data: [DONE]\n\n"
                    self.wfile.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(done), done))
                    return
                data = json.dumps({"object": "chat.completion", "echo": body.decode(),
                                   "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"},
                                                "finish_reason": "stop"}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()

