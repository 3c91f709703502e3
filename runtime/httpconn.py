"""HTTP/1.1 connection handling for ``crossguard serve``, on the standard library's ``http.server``.

Knows nothing of guards or routes. What ``ThreadingHTTPServer`` lacks is added here: a bounded pool of
connection threads (new connections get an immediate 503 when it is full), a watchdog that cuts connections
whose request line, headers or body take longer than the configured timeouts in total (a slowloris client
cannot hold a worker by trickling bytes), one unambiguous body length (no ``Transfer-Encoding``, one
``Content-Length`` of plain digits, checked against the limit before reading), and JSON errors for every
malformed request. A subclass of :class:`ConnectionHandler` answers the requests (``dispatch``).

The server's ``config`` needs: ``max_connections``, ``max_body_bytes``, ``header_timeout_s``,
``body_timeout_s``, ``keepalive_timeout_s`` and ``write_timeout_s``.
"""
from __future__ import annotations

import http.server
import json
import logging
import re
import socket
import threading
import time
import uuid
from typing import Any

log = logging.getLogger("crossguard.server")

_DIGITS = re.compile(r"[0-9]{1,18}")


class RequestError(ValueError):
    """The client's request is malformed; ``status`` and ``code`` become the JSON error."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    @classmethod
    def of(cls, error: Any) -> RequestError:
        """The HTTP form of a ``preprocess.InputError``: its code, 413 when the input is over a limit, else 400."""
        return cls(413 if error.too_large else 400, error.code, str(error))


def api_error(code: str, message: str, kind: str = "invalid_request_error") -> dict:
    """Error body: ours (``code``/``message``) and OpenAI's (``type``) in one object."""
    return {"error": {"code": code, "message": message, "type": kind}}


def new_request_id() -> str:
    return uuid.uuid4().hex[:16]


class Watchdog:
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


class BoundedHTTPServer(http.server.HTTPServer):
    """HTTPServer with a bounded pool of connection threads; a full pool answers 503 at once."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, config: Any, handler: type[ConnectionHandler]):
        self.config = config
        self.slots = threading.BoundedSemaphore(config.max_connections)
        smallest = min(config.header_timeout_s, config.body_timeout_s, config.keepalive_timeout_s)
        self.watchdog = Watchdog(max(0.01, min(0.25, smallest / 5)))
        super().__init__((config.host, config.port), handler)

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


class ConnectionHandler(http.server.BaseHTTPRequestHandler):
    """Connection lifecycle, deadlines, body reading and JSON answers; subclasses implement ``dispatch``."""

    protocol_version = "HTTP/1.1"
    server_version = "crossguard"
    server: BoundedHTTPServer

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
            too_big = (self.declared_length() or 0) > self.server.config.max_body_bytes
        except RequestError:
            too_big = False  # the request's own handler answers the bad header
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

    def dispatch(self) -> None:
        """Answer the request whose line and headers are in (``self.command``, ``self.path``, ``self.headers``)."""
        raise NotImplementedError

    def _handle_request(self) -> None:
        self.server.watchdog.disarm(self)  # headers are in; read_body arms the body deadline
        try:
            self.dispatch()
        except RequestError as e:
            self._error(e.status, e.code, e.message)
        except (ConnectionError, TimeoutError):
            self.close_connection = True
        except Exception as e:  # noqa: BLE001 - a bug answers 500, the server keeps serving
            log.exception("request_id=%s internal error", self.request_id)
            self._error(500, "internal_error", f"{type(e).__name__}: {e}")

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _handle_request

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
    def declared_length(self) -> int | None:
        """The body length the client declared: ``None`` without a body. One ``Content-Length`` of plain digits
        (several equal copies count as one); ``Transfer-Encoding`` of any kind is refused, so this server and an
        upstream can never disagree on where the body ends."""
        if self.headers.get_all("Transfer-Encoding"):
            raise RequestError(411, "length_required", "Transfer-Encoding (chunked) request bodies are not accepted; "
                                                       "send Content-Length")
        values = {v.strip() for v in self.headers.get_all("Content-Length", [])}
        if not values:
            return None
        if len(values) > 1:
            raise RequestError(400, "bad_request", f"conflicting Content-Length headers {sorted(values)}")
        raw = values.pop()
        if not _DIGITS.fullmatch(raw):
            raise RequestError(400, "bad_request", f"invalid Content-Length {raw!r}")
        return int(raw)

    def read_body(self, required: bool = True) -> bytes:
        """The whole body within ``body_timeout_s``; 411 without a length when ``required``, 413 over the limit."""
        cfg = self.server.config
        length = self.declared_length()
        if length is None:
            if required:
                raise RequestError(411, "length_required", "Content-Length is required")
            return b""
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
