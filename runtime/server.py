"""``crossguard serve``: a local HTTP screening server and an OpenAI-compatible pre-filter proxy.

Why the standard library (``http.server``) and not FastAPI/uvicorn: the runtime installs on a device with
numpy + Pillow + onnxruntime only, screening is CPU/GPU-bound work that runs in threads anyway (ONNX
Runtime releases the GIL), and the traffic is a handful of local clients. What ``ThreadingHTTPServer``
lacks is added here: a bounded worker pool (new connections get an immediate 503 when it is full), a
watchdog that cuts connections whose request line, headers or body take longer than the configured
timeouts in total (a slowloris client cannot hold a worker by trickling bytes), size limits checked before
reading, and JSON errors for every bad input.

Endpoints
* ``POST /v1/screen``: JSON ``{"text": "...", "image": "<base64>" | "data:image/png;base64,..."}`` or
  multipart/form-data (field ``text``, file ``image``) -> ``Verdict.to_dict()``. ``text`` is required
  (may be empty when an image is given); ``image`` is optional.
* ``GET /healthz``: status, backend, bundle name and hash. ``GET /v1/info``: the same plus the limits.
* With ``--upstream URL``: ``POST .../chat/completions`` is screened (see ``runtime/proxy.py`` for what is
  screened) and forwarded or refused in the API's own shape; every other path is forwarded untouched.

Errors are ``{"error": {"code": ..., "message": ..., "type": ...}}`` with a 4xx status for client
mistakes, 503 when saturated or the guard fails (fail-closed), 502 when the upstream is unreachable.
Verdicts are logged (request id, label, score, domain, modality, latency); the user's text and an image
digest are logged only with ``--log-content``. Images themselves are never written anywhere.
"""
from __future__ import annotations

import argparse
import hashlib
import http.client
import http.server
import ipaddress
import json
import logging
import signal
import socket
import threading
import time
from concurrent.futures import Future
from dataclasses import asdict, dataclass
from typing import Any

from .preprocess import MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS, MAX_TEXT_CHARS, ImageLimits, InputError, check_text, load_image
from .proxy import (HOP_BY_HOP, DEFAULT_REFUSAL, RequestError, Upstream, api_error, collect_chat_inputs,
                    decode_base64_image, forward_headers, new_request_id, open_upstream, refusal_completion,
                    refusal_sse, verdict_header)

log = logging.getLogger("crossguard.server")


@dataclass
class ServerConfig:
    """Limits and behaviour of one server; every field has a ``crossguard serve`` flag."""

    host: str = "127.0.0.1"
    port: int = 8765
    max_body_bytes: int = 20 * 1024 * 1024
    max_image_bytes: int = MAX_IMAGE_BYTES
    max_image_pixels: int = MAX_IMAGE_PIXELS
    max_text_chars: int = MAX_TEXT_CHARS
    max_images: int = 16
    header_timeout_s: float = 10.0   # request line + headers, in total
    body_timeout_s: float = 30.0     # the whole body, in total
    keepalive_timeout_s: float = 5.0  # idle wait for the next request on a kept-alive connection
    write_timeout_s: float = 60.0    # one blocked send to a client that does not read
    screen_timeout_s: float = 60.0
    max_connections: int = 64
    upstream: str | None = None
    upstream_timeout_s: float = 600.0
    fail_open: bool = False
    remote_images: str = "refuse"
    refusal_message: str = DEFAULT_REFUSAL
    log_content: bool = False


class GuardUnavailable(RuntimeError):
    """The guard could not produce a verdict (not the client's fault)."""


class Screener:
    """Runs (image, text) pairs through the guard, via ``crossguard.runtime.batching`` when available.

    Images arrive here already decoded (``preprocess.load_image``), so bad images are rejected as 4xx
    before they reach the guard. Without a batcher the guard is called from the request thread.
    """

    def __init__(self, guard: Any, max_batch: int = 8, max_wait_ms: float = 5.0):
        self.guard = guard
        self.batcher = None
        if max_batch > 1:
            try:
                from . import batching
                cls = getattr(batching, "MicroBatcher", None) or getattr(batching, "Batcher")
                self.batcher = cls(guard, max_batch=max_batch, max_wait_ms=max_wait_ms)
            except (ImportError, AttributeError, TypeError) as e:
                log.warning("micro-batching unavailable (%s); screening one request at a time per thread", e)

    def screen(self, pairs: list[tuple[Any, str]], timeout: float) -> list:
        """Verdicts for the pairs; ``InputError`` passes through, anything else is ``GuardUnavailable``."""
        try:
            if self.batcher is not None:
                futures: list[Future] = [self.batcher.submit(img, text) for img, text in pairs]
                deadline = time.monotonic() + timeout
                return [f.result(timeout=max(0.0, deadline - time.monotonic())) for f in futures]
            if len(pairs) > 1 and callable(getattr(self.guard, "screen_batch", None)):
                images, texts = zip(*pairs)
                return list(self.guard.screen_batch(list(images), list(texts)))
            return [self.guard.screen(img, text) for img, text in pairs]
        except InputError:
            raise
        except Exception as e:  # noqa: BLE001 - any guard failure becomes one clear 503/fail-open
            raise GuardUnavailable(f"{type(e).__name__}: {e}") from e

    def info(self) -> dict:
        """Backend and bundle identity: ``guard.info()`` (the real Guard) or the guard's attributes."""
        g = self.guard
        info = dict(g.info()) if callable(getattr(g, "info", None)) else {}
        bundle = {"name": info.pop("bundle_name", getattr(g, "bundle_name", None)),
                  "hash": info.pop("bundle_hash", getattr(g, "bundle_hash", None)),
                  "path": info.pop("bundle_path", None)}
        backend = info.pop("backend", getattr(g, "backend", None))
        out = {"backend": backend, "bundle": bundle, "batching": self.batcher is not None}
        if self.batcher is not None:
            out["max_batch"] = getattr(self.batcher, "max_batch", None)
        return dict(out, guard=info) if info else out

    def close(self) -> None:
        close = getattr(self.batcher, "close", None) or getattr(self.batcher, "shutdown", None)
        if close:
            close()


class _Watchdog:
    """Cuts the read side of connections whose current read phase is past its deadline (anti-slowloris)."""

    def __init__(self, period_s: float):
        self._deadlines: dict[Any, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._period = period_s
        self._thread = threading.Thread(target=self._run, name="crossguard-watchdog", daemon=True)
        self._thread.start()

    def arm(self, handler: Any, seconds: float) -> None:
        with self._lock:
            self._deadlines[handler] = time.monotonic() + seconds

    def disarm(self, handler: Any) -> None:
        with self._lock:
            self._deadlines.pop(handler, None)

    def _run(self) -> None:
        while not self._stop.wait(self._period):
            now = time.monotonic()
            with self._lock:
                expired = [h for h, d in self._deadlines.items() if d <= now]
                for h in expired:
                    del self._deadlines[h]
            for h in expired:
                h.expire()

    def stop(self) -> None:
        self._stop.set()


class _HTTPServer(http.server.HTTPServer):
    """HTTPServer with a bounded pool of connection threads; a full pool answers 503 at once."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, config: ServerConfig, screener: Screener, upstream: Upstream | None):
        self.config, self.screener, self.upstream = config, screener, upstream
        self.slots = threading.BoundedSemaphore(config.max_connections)
        smallest = min(config.header_timeout_s, config.body_timeout_s, config.keepalive_timeout_s)
        self.watchdog = _Watchdog(max(0.01, min(0.25, smallest / 5)))
        super().__init__((config.host, config.port), _Handler)

    def process_request(self, request, client_address):
        if not self.slots.acquire(blocking=False):
            self._reject_busy(request)
            return
        threading.Thread(target=self._serve_connection, args=(request, client_address), daemon=True).start()

    def _serve_connection(self, request, client_address) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:  # noqa: BLE001 - one broken connection never takes the server down
            log.exception("connection from %s failed", client_address)
        finally:
            self.shutdown_request(request)
            self.slots.release()

    def _reject_busy(self, request: socket.socket) -> None:
        body = json.dumps(api_error("busy", "server is at its connection limit; retry shortly",
                                    "server_error")).encode()
        head = (f"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: {len(body)}"
                "\r\nRetry-After: 1\r\nConnection: close\r\n\r\n").encode()
        try:
            request.settimeout(0.5)
            request.sendall(head + body)
            request.shutdown(socket.SHUT_WR)
            request.setblocking(False)
            try:  # drain what the client already sent, so closing does not reset the connection
                while request.recv(65536):
                    pass
            except OSError:
                pass
        except OSError:
            pass
        finally:
            self.shutdown_request(request)

    def server_close(self) -> None:
        self.watchdog.stop()
        super().server_close()


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "crossguard"
    server: _HTTPServer

    # ---- connection lifecycle --------------------------------------------------------------------------
    def setup(self) -> None:
        self.timeout = self.server.config.write_timeout_s
        self.timed_out = False
        self.linger = False
        super().setup()
        try:  # SSE chunks and small answers go out at once
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass

    LINGER_SECONDS = 1.0
    LINGER_MAX_BYTES = 256 * 2**20

    def finish(self) -> None:
        """After an error the client may still be sending its body: half-close and drain it briefly (at most
        ``LINGER_SECONDS`` and ``LINGER_MAX_BYTES``, whatever the body limit: a client sending a body far over the
        limit must still get to read our 413), so closing does not reset the connection before the client has
        read our answer (lingering close)."""
        try:
            super().finish()
            if self.linger and not self.timed_out:
                self.connection.shutdown(socket.SHUT_WR)
                end = time.monotonic() + self.LINGER_SECONDS
                self.connection.settimeout(0.2)
                drained = 0
                while time.monotonic() < end and drained <= self.LINGER_MAX_BYTES:
                    chunk = self.connection.recv(65536)
                    if not chunk:
                        break
                    drained += len(chunk)
        except OSError:
            pass

    def expire(self) -> None:
        """Called by the watchdog: stop reading from this client (its blocked read returns EOF)."""
        self.timed_out = True
        try:
            self.connection.shutdown(socket.SHUT_RD)
        except OSError:
            pass

    def handle(self) -> None:
        cfg, first = self.server.config, True
        self.close_connection = True
        while True:
            self.server.watchdog.arm(self, cfg.header_timeout_s if first else cfg.keepalive_timeout_s)
            try:
                self.handle_one_request()
            except (ConnectionError, TimeoutError) as e:
                log.debug("connection %s ended: %s", self.client_address, e)
                self.close_connection = True
            finally:
                self.server.watchdog.disarm(self)
            first = False
            if self.close_connection or self.timed_out:
                return

    def parse_request(self) -> bool:
        self.server.watchdog.arm(self, self.server.config.header_timeout_s)
        self.request_id = new_request_id()
        self.t0 = time.perf_counter()
        if self.timed_out:  # the request line itself was cut short by the watchdog
            self.command, self.request_version = None, "HTTP/1.1"
            self.requestline = str(self.raw_requestline[:200], "iso-8859-1").rstrip("\r\n")
            self._error(408, "request_timeout", "request line not received in time")
            return False
        ok = super().parse_request()
        if ok and self.timed_out:
            self._error(408, "request_timeout", "request headers not received in time")
            return False
        rid = self.headers.get("X-Request-ID", "") if ok else ""
        if 0 < len(rid) <= 64 and rid.isascii() and rid.replace("-", "").replace("_", "").isalnum():
            self.request_id = rid
        return ok

    def handle_expect_100(self) -> bool:
        """``Expect: 100-continue`` with a body over the limit: 413 before the client sends it."""
        try:
            too_big = int(self.headers.get("Content-Length", "0")) > self.server.config.max_body_bytes
        except ValueError:
            too_big = False
        if too_big:
            self._error(413, "body_too_large", f"body is over the limit of {self.server.config.max_body_bytes} bytes")
            return False
        return super().handle_expect_100()

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own errors (bad request line, 414, 431, 501) as JSON too."""
        self._error(code, {400: "bad_request", 414: "uri_too_long", 431: "headers_too_large",
                           501: "method_not_supported"}.get(code, "http_error"), message or explain or "error")

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
        log.debug("%s %s", self.address_string(), format % args)

    # ---- responses -------------------------------------------------------------------------------------
    def _send(self, status: int, body: bytes, content_type: str = "application/json",
              headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Request-ID", self.request_id)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if self.close_connection:
            self.send_header("Connection", "close")
        # headers and body in one write: two small writes meet Nagle + delayed ACK (a 40 ms stall)
        self._headers_buffer.append(b"\r\n")
        if getattr(self, "command", None) != "HEAD":
            self._headers_buffer.append(body)
        self.flush_headers()

    def _json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(obj).encode(), headers=headers)

    def _error(self, status: int, code: str, message: str, kind: str | None = None,
               headers: dict[str, str] | None = None) -> None:
        if not hasattr(self, "request_id"):
            self.request_id = new_request_id()
        self.close_connection = True  # part of the request may still be unread: never reuse the connection
        self.linger = True
        if getattr(self, "request_version", "HTTP/0.9") == "HTTP/0.9":
            self.request_version = "HTTP/1.1"  # answer malformed request lines with a status line, not bare JSON
        kind = kind or ("server_error" if status >= 500 else "invalid_request_error")
        log.info("request_id=%s status=%d error=%s: %s", self.request_id, status, code, message)
        try:
            self._json(status, api_error(code, message, kind), headers)
        except OSError:
            self.close_connection = True

    # ---- reading the request ---------------------------------------------------------------------------
    def _read_body(self, required: bool = True) -> bytes:
        cfg = self.server.config
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            raise RequestError(411, "length_required", "chunked request bodies are not accepted; send Content-Length")
        raw = self.headers.get("Content-Length")
        if raw is None:
            if required:
                raise RequestError(411, "length_required", "Content-Length is required")
            return b""
        try:
            length = int(raw)
            if length < 0:
                raise ValueError
        except ValueError:
            raise RequestError(400, "bad_request", f"invalid Content-Length {raw!r}") from None
        if length > cfg.max_body_bytes:
            raise RequestError(413, "body_too_large", f"body is {length} bytes; the limit is {cfg.max_body_bytes}")
        self.server.watchdog.arm(self, cfg.body_timeout_s)
        try:
            body = self.rfile.read(length) if length else b""
        finally:
            self.server.watchdog.disarm(self)
        if len(body) < length:
            if self.timed_out:
                raise RequestError(408, "request_timeout", f"body not received within {cfg.body_timeout_s:g} s")
            raise RequestError(400, "truncated_body", f"body ended after {len(body)} of {length} bytes")
        return body

    def _image_limits(self) -> ImageLimits:
        cfg = self.server.config
        return ImageLimits(max_pixels=cfg.max_image_pixels, max_bytes=cfg.max_image_bytes)

    def _decode_image(self, data: bytes) -> Any:
        try:
            return load_image(data, self._image_limits())
        except InputError as e:
            raise RequestError.of(e) from None

    def _check_text(self, text: Any) -> str:
        try:
            text = check_text(text, self.server.config.max_text_chars)
            text.encode("utf-8")  # lone surrogates from JSON "\ud800" escapes
        except InputError as e:
            raise RequestError.of(e) from None
        except UnicodeEncodeError:
            raise RequestError(400, "invalid_text", "text contains unpaired UTF-16 surrogates") from None
        return text

    def _parse_screen_request(self, body: bytes) -> tuple[bytes | None, Any]:
        ctype = self.headers.get_content_type()
        if ctype == "application/json":
            try:
                obj = json.loads(body)
            except UnicodeDecodeError as e:
                raise RequestError(400, "invalid_json", f"body is not valid UTF-8: {e}") from None
            except ValueError as e:
                raise RequestError(400, "invalid_json", f"body is not valid JSON: {e}") from None
            if not isinstance(obj, dict):
                raise RequestError(400, "invalid_json", "body must be a JSON object")
            if "text" not in obj:
                raise RequestError(400, "missing_field", "field 'text' is required (use \"\" for image only)")
            if not isinstance(obj["text"], str):
                raise RequestError(400, "invalid_field", f"field 'text' must be a string, got {type(obj['text']).__name__}")
            image = obj.get("image")
            data = None if image is None else decode_base64_image(image, self.server.config.max_image_bytes)
            return data, obj["text"]
        if ctype == "multipart/form-data":
            fields = parse_multipart(body, self.headers.get_param("boundary"))
            if "text" not in fields:
                raise RequestError(400, "missing_field", "form field 'text' is required (may be empty)")
            image = fields.get("image")
            if image is not None and not image:
                raise RequestError(400, "invalid_image", "image is empty (0 bytes)")
            return image, fields["text"]  # bytes: check_text decodes them as strict UTF-8
        raise RequestError(415, "unsupported_media_type",
                           f"Content-Type {ctype!r} is not accepted; use application/json or multipart/form-data")

    # ---- routing ---------------------------------------------------------------------------------------
    def _dispatch(self) -> None:
        self.server.watchdog.disarm(self)  # headers are in; _read_body arms the body deadline
        path = self.path.split("?", 1)[0]
        try:
            if path == "/healthz" and self.command in ("GET", "HEAD"):
                return self._json(200, self._health())
            if path == "/v1/info" and self.command in ("GET", "HEAD"):
                cfg = asdict(self.server.config)
                return self._json(200, dict(self._health(), limits=cfg))
            if path == "/v1/screen":
                if self.command != "POST":
                    return self._error(405, "method_not_allowed", "use POST /v1/screen", headers={"Allow": "POST"})
                return self._screen_endpoint()
            if self.server.upstream is not None:
                if self.command == "POST" and path.endswith("/chat/completions"):
                    return self._chat_completions()
                return self._forward(self._read_body(required=False) or None, {})
            return self._error(404, "not_found", f"no route {self.command} {path}")
        except RequestError as e:
            self._error(e.status, e.code, e.message)
        except GuardUnavailable as e:
            log.error("request_id=%s guard failed: %s", self.request_id, e)
            self._error(503, "guard_error", f"the guard could not screen this request: {e}", "server_error")
        except (ConnectionError, TimeoutError):
            self.close_connection = True
        except Exception as e:  # noqa: BLE001 - a bug answers 500, the server keeps serving
            log.exception("request_id=%s internal error", self.request_id)
            self._error(500, "internal_error", f"{type(e).__name__}: {e}")

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _dispatch

    def _health(self) -> dict:
        up = self.server.upstream
        return dict({"status": "ok"}, **self.server.screener.info(), upstream=up.url if up else None)

    # ---- /v1/screen --------------------------------------------------------------------------------------
    def _screen_endpoint(self) -> None:
        data, raw_text = self._parse_screen_request(self._read_body())
        text = self._check_text(raw_text)
        image = self._decode_image(data) if data is not None else None
        if image is None and not text.strip():
            raise RequestError(400, "empty_request", "nothing to screen: text is empty and no image was given")
        verdicts = self._screen([(image, text)], [data])
        self._json(200, verdicts[0].to_dict())

    def _screen(self, pairs: list[tuple[Any, str]], raw_images: list[bytes | None]) -> list:
        try:
            verdicts = self.server.screener.screen(pairs, self.server.config.screen_timeout_s)
        except InputError as e:
            raise RequestError.of(e) from None
        latency = (time.perf_counter() - self.t0) * 1000
        for v, (_, text), raw in zip(verdicts, pairs, raw_images):
            content = ""
            if self.server.config.log_content:
                digest = hashlib.sha256(raw).hexdigest()[:16] if raw else None
                content = f" image_sha256={digest} text={text!r}"
            log.info("request_id=%s label=%s score=%.4f domain=%s modality=%s guard_ms=%.1f latency_ms=%.1f%s",
                     self.request_id, v.label, v.score, v.domain, v.modality, v.latency_ms, latency, content)
        return verdicts

    # ---- proxy -------------------------------------------------------------------------------------------
    def _chat_completions(self) -> None:
        cfg = self.server.config
        body = self._read_body()
        try:
            obj = json.loads(body)
        except ValueError as e:  # UnicodeDecodeError is a ValueError
            raise RequestError(400, "invalid_json", f"body is not valid JSON: {e}") from None
        inputs = collect_chat_inputs(obj, max_image_bytes=cfg.max_image_bytes, max_images=cfg.max_images,
                                     remote_images=cfg.remote_images)
        text = self._check_text(inputs.text)
        images = [self._decode_image(d) for d in inputs.images]
        if not images and not text.strip():  # e.g. a last turn of only (ignored) remote images
            return self._forward(body, {"X-CrossGuard-Screened": "nothing-to-screen"})
        pairs = [(img, text) for img in images] or [(None, text)]
        try:
            verdicts = self._screen(pairs, inputs.images or [None])
        except GuardUnavailable as e:
            if not cfg.fail_open:
                raise
            log.warning("request_id=%s guard failed, forwarding unscreened (--fail-open): %s", self.request_id, e)
            return self._forward(body, {"X-CrossGuard-Screened": "false", "X-CrossGuard-Error": "guard_error"})
        header = {"X-CrossGuard-Verdict": verdict_header(verdicts), "X-CrossGuard-Screened": "true"}
        if not any(v.unsafe for v in verdicts):
            return self._forward(body, header)
        model = obj.get("model")
        if obj.get("stream") is True:
            return self._send(200, refusal_sse(model, cfg.refusal_message, self.request_id),
                              "text/event-stream", dict(header, **{"Cache-Control": "no-cache"}))
        self._json(200, refusal_completion(model, cfg.refusal_message, self.request_id), header)

    def _forward(self, body: bytes | None, extra_headers: dict[str, str]) -> None:
        """Send the request upstream unchanged and stream the answer back chunk by chunk."""
        up, cfg = self.server.upstream, self.server.config
        headers = forward_headers(self.headers, up, None if body is None else len(body))
        try:
            conn, resp = open_upstream(up, self.command, self.path, body, headers, cfg.upstream_timeout_s)
        except OSError as e:
            raise RequestError(502, "upstream_unreachable", f"upstream {up.url} failed: {e}") from None
        try:
            no_body = self.command == "HEAD" or resp.status in (204, 304) or 100 <= resp.status < 200
            length = resp.getheader("Content-Length")
            chunked = not no_body and length is None and self.request_version == "HTTP/1.1"
            if not no_body and length is None and not chunked:
                self.close_connection = True  # HTTP/1.0 client: the end of the body is the end of the connection
            self.send_response(resp.status, resp.reason)
            for k, v in resp.getheaders():
                if k.lower() not in HOP_BY_HOP and k.lower() not in ("server", "date"):
                    self.send_header(k, v)
            for k, v in dict(extra_headers, **{"X-Request-ID": self.request_id}).items():
                self.send_header(k, v)
            if chunked:
                self.send_header("Transfer-Encoding", "chunked")
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if no_body:
                return
            while True:
                chunk = resp.read1(65536)
                if not chunk:
                    break
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
            if chunked:
                self.wfile.write(b"0\r\n\r\n")
        except (OSError, http.client.HTTPException) as e:
            log.warning("request_id=%s upstream stream broke: %s", self.request_id, e)
            self.close_connection = True
        finally:
            conn.close()



def parse_multipart(body: bytes, boundary: str | None) -> dict[str, bytes]:
    """multipart/form-data -> {field name: raw bytes}; ``RequestError`` when malformed."""
    if not boundary or len(boundary) > 200:
        raise RequestError(400, "bad_multipart", "multipart/form-data needs a boundary parameter")
    delim = b"--" + boundary.encode("latin-1")
    if not body.startswith(delim) and delim not in body:
        raise RequestError(400, "bad_multipart", "multipart body does not contain its boundary")
    fields: dict[str, bytes] = {}
    closed = False
    for part in body.split(delim)[1:]:
        if part.startswith(b"--"):
            closed = True
            break
        head, sep, content = part.partition(b"\r\n\r\n")
        if not sep:
            raise RequestError(400, "bad_multipart", "multipart part without a header/body separator")
        if content.endswith(b"\r\n"):
            content = content[:-2]
        name = None
        for line in head.decode("latin-1").split("\r\n"):
            key, _, value = line.partition(":")
            if key.strip().lower() == "content-disposition":
                for param in value.split(";")[1:]:
                    k, _, v = param.strip().partition("=")
                    if k.lower() == "name":
                        name = v.strip('"')
        if name is None:
            raise RequestError(400, "bad_multipart", "multipart part without a Content-Disposition name")
        fields[name] = content
    if not closed:
        raise RequestError(400, "bad_multipart", "multipart body is truncated (no closing boundary)")
    return fields


class GuardServer:
    """A running server: ``GuardServer(guard, config).start()`` (background thread) or ``.serve_forever()``."""

    def __init__(self, guard: Any, config: ServerConfig | None = None, max_batch: int = 8, max_wait_ms: float = 5.0):
        self.config = config or ServerConfig()
        upstream = Upstream.parse(self.config.upstream) if self.config.upstream else None
        if self.config.remote_images not in ("refuse", "ignore"):
            raise ValueError("remote_images must be 'refuse' or 'ignore'")
        self.screener = Screener(guard, max_batch=max_batch, max_wait_ms=max_wait_ms)
        self.httpd = _HTTPServer(self.config, self.screener, upstream)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    @property
    def url(self) -> str:
        host = self.httpd.server_address[0]
        return f"http://{'[' + host + ']' if ':' in host else host}:{self.port}"

    def start(self) -> GuardServer:
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="crossguard-server", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self.httpd.serve_forever(poll_interval=0.5)

    def stop(self) -> None:
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread.join(timeout=5)
        self.httpd.server_close()
        self.screener.close()

    def __enter__(self) -> GuardServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def configure(parser: argparse.ArgumentParser) -> None:
    d = ServerConfig()
    parser.add_argument("--host", default=d.host, help="bind address (default loopback; anything else is exposed)")
    parser.add_argument("--port", type=int, default=d.port)
    parser.add_argument("--bundle", default=None, help="bundle directory (default $CROSSGUARD_BUNDLE or the cache)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, tensorrt")
    parser.add_argument("--precision", default="auto", help="auto, fp32, fp16, int8")
    parser.add_argument("--max-batch", type=int, default=8, help="micro-batch size (1 disables batching)")
    parser.add_argument("--workers", type=int, default=0,
                        help="threads that resize a micro-batch's images and run its OCR side by side (0: auto)")
    parser.add_argument("--ocr-device", default="auto", choices=("auto", "cpu", "cuda"),
                        help="where the OCR runs (auto: the CPU, also when the graphs run on a GPU)")
    parser.add_argument("--max-wait-ms", type=float, default=5.0, help="longest wait to fill a micro-batch")
    parser.add_argument("--upstream", default=None, metavar="URL",
                        help="act as an OpenAI-compatible pre-filter proxy in front of this server")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--fail-closed", dest="fail_open", action="store_false",
                      help="guard error: refuse with 503 (default)")
    mode.add_argument("--fail-open", dest="fail_open", action="store_true",
                      help="guard error: forward unscreened, marked X-CrossGuard-Screened: false")
    parser.add_argument("--remote-images", choices=("refuse", "ignore"), default=d.remote_images,
                        help="http(s) image URLs in chat requests are never fetched: refuse the request "
                             "(default) or screen without them")
    parser.add_argument("--refusal-message", default=d.refusal_message)
    parser.add_argument("--max-body-mb", type=float, default=d.max_body_bytes / 2**20)
    parser.add_argument("--max-image-pixels", type=int, default=d.max_image_pixels)
    parser.add_argument("--max-text-chars", type=int, default=d.max_text_chars)
    parser.add_argument("--max-images", type=int, default=d.max_images, help="images per chat request")
    parser.add_argument("--max-connections", type=int, default=d.max_connections,
                        help="concurrent connections; more get 503")
    parser.add_argument("--header-timeout", type=float, default=d.header_timeout_s, help="seconds for request line + headers")
    parser.add_argument("--body-timeout", type=float, default=d.body_timeout_s, help="seconds for the whole body")
    parser.add_argument("--keepalive-timeout", type=float, default=d.keepalive_timeout_s)
    parser.add_argument("--upstream-timeout", type=float, default=d.upstream_timeout_s)
    parser.add_argument("--log-content", action="store_true",
                        help="also log the user's text and an image digest (off: only verdicts)")
    parser.add_argument("--log-level", default="INFO")
    parser.set_defaults(func=run, fail_open=False)


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    return ServerConfig(
        host=args.host, port=args.port, max_body_bytes=int(args.max_body_mb * 2**20),
        max_image_pixels=args.max_image_pixels, max_text_chars=args.max_text_chars, max_images=args.max_images,
        header_timeout_s=args.header_timeout, body_timeout_s=args.body_timeout,
        keepalive_timeout_s=args.keepalive_timeout, max_connections=args.max_connections,
        upstream=args.upstream, upstream_timeout_s=args.upstream_timeout, fail_open=args.fail_open,
        remote_images=args.remote_images, refusal_message=args.refusal_message, log_content=args.log_content)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = config_from_args(args)
    if args.upstream:
        try:
            Upstream.parse(args.upstream)
        except ValueError as e:
            log.error("%s", e)
            return 2
    try:
        from .guard import Guard

        guard = Guard.load(bundle=args.bundle, device=args.device, precision=args.precision, workers=args.workers,
                           ocr_device=args.ocr_device)
        guard.warmup(max_batch=args.max_batch)  # on a GPU: every micro-batch shape before the first request
    except Exception as e:  # noqa: BLE001 - a missing/corrupt bundle or backend: one clear line, exit 2
        log.error("cannot load the guard: %s: %s", type(e).__name__, e)
        return 2
    try:
        server = GuardServer(guard, config, max_batch=args.max_batch, max_wait_ms=args.max_wait_ms)
    except OSError as e:
        log.error("cannot listen on %s:%d: %s", config.host, config.port, e)
        return 2
    if not _is_loopback(config.host):
        log.warning("listening on %s: reachable from other machines; the server has no authentication", config.host)
    mode = f"proxy to {config.upstream}" if config.upstream else "screening server"
    log.info("crossguard %s on %s (%s)", mode, server.url, server.screener.info())
    def _stop(signum, _frame):  # SIGTERM (systemd, docker stop): finish like Ctrl-C
        log.info("signal %d: stopping", signum)
        threading.Thread(target=server.httpd.shutdown, daemon=True).start()

    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _stop) if main_thread else None
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        log.info("stopping")
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
        server.httpd.server_close()
        server.screener.close()
    return 0
