"""``crossguard serve``: a local HTTP screening server and an OpenAI-compatible pre-filter proxy.

The HTTP layer is the standard library's ``http.server`` with the limits of ``runtime/httpconn.py`` (why not
uvicorn/starlette: ``docs/serving.md``, measured). Routes are decided on one canonical path
(``runtime/routes.py``); what is screened in each generation API is ``runtime/apis.py``.

Endpoints
* ``POST /v1/screen``: JSON ``{"text": "...", "image": "<base64>" | "data:image/png;base64,..."}`` or
  multipart/form-data (field ``text``, file ``image``) -> ``Verdict.to_dict()``. ``text`` is required
  (may be empty when an image is given); ``image`` is optional.
* ``POST /v1/moderations`` (OpenAI's moderation format) and ``POST /beta/litellm_basic_guardrail_api``
  (LiteLLM's Generic Guardrail API): ``runtime/moderation.py``.
* ``GET /healthz``: ``{"status": "ok", "bundle_hash": ...}``, nothing more. ``GET /v1/info`` (backend, bundle,
  limits) only when the local user started the server with ``--expose-info``.
* With ``--upstream URL``: POSTs to generation routes (OpenAI chat completions, completions, responses; Ollama
  ``/api/chat``, ``/api/generate``) are screened and forwarded or refused in the API's own shape; GET, HEAD and
  OPTIONS are forwarded without a body; other POSTs only to routes listed with ``--pass-route`` (and a few
  default ones that generate nothing, ``routes.DEFAULT_PASS_ROUTES``), else 403.

Errors are ``{"error": {"code": ..., "message": ..., "type": ...}}`` with a 4xx status for client
mistakes, 503 when saturated or the guard fails (fail-closed), 502 when the upstream is unreachable.
Verdicts are logged (request id, label, score, domain, modality, latency); the user's text and an image
digest are logged only with ``--log-content``. Images themselves are never written anywhere.
"""
from __future__ import annotations

import argparse
import hashlib
import http.client
import ipaddress
import logging
import signal
import threading
import time
from concurrent.futures import Future
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any

from . import apis, moderation
from .cli import NO_RECHECK_HELP
from .httpconn import BoundedHTTPServer, ConnectionHandler, RequestError, parse_multipart
from .preprocess import MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS, MAX_TEXT_CHARS, ImageLimits, InputError, check_text, load_image
from .proxy import (HOP_BY_HOP, DEFAULT_REFUSAL, Upstream, decode_base64_image, forward_headers, open_upstream,
                    parse_json, verdict_header)
from .routes import BODYLESS_METHODS, canonical_target, generation_kind, pass_routes

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
    max_messages: int = 256          # messages screened in one generation request
    max_decodes: int = 2             # images decoded at once (each may take ~0.2 GB at the pixel limit)
    header_timeout_s: float = 10.0   # request line + headers, in total
    body_timeout_s: float = 30.0     # the whole body, in total
    keepalive_timeout_s: float = 5.0  # idle wait for the next request on a kept-alive connection
    write_timeout_s: float = 60.0    # one blocked send to a client that does not read
    screen_timeout_s: float = 60.0
    max_connections: int = 64
    upstream: str | None = None
    upstream_timeout_s: float = 600.0
    pass_routes: tuple[str, ...] = ()
    fail_open: bool = False
    remote_images: str = "refuse"
    refusal_message: str = DEFAULT_REFUSAL
    log_content: bool = False
    expose_info: bool = False


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


class _GuardHTTPServer(BoundedHTTPServer):
    """The HTTP server plus what every request needs: the screener, the upstream, the decode slots."""

    def __init__(self, config: ServerConfig, screener: Screener, upstream: Upstream | None):
        self.screener, self.upstream = screener, upstream
        self.pass_routes = pass_routes(config.pass_routes)
        self.decodes = threading.BoundedSemaphore(max(1, config.max_decodes))
        self.limits = apis.Limits(max_image_bytes=config.max_image_bytes, max_images=config.max_images,
                                  max_messages=config.max_messages, max_text_chars=config.max_text_chars,
                                  remote_images=config.remote_images)
        super().__init__(config, _Handler)


class _Handler(ConnectionHandler):
    server: _GuardHTTPServer

    # ---- checks ------------------------------------------------------------------------------------------
    def _decode_image(self, data: bytes) -> Any:
        """Decode within the server's bound on concurrent decodes (503 when none frees up in time)."""
        cfg = self.server.config
        if not self.server.decodes.acquire(timeout=cfg.screen_timeout_s):
            raise RequestError(503, "busy", "too many images are being decoded; retry shortly")
        try:
            return load_image(data, ImageLimits(max_pixels=cfg.max_image_pixels, max_bytes=cfg.max_image_bytes))
        except InputError as e:
            raise RequestError.of(e) from None
        finally:
            self.server.decodes.release()

    def _check_text(self, text: Any) -> str:
        try:
            text = check_text(text, self.server.config.max_text_chars)
            text.encode("utf-8")  # lone surrogates from JSON "\ud800" escapes
        except InputError as e:
            raise RequestError.of(e) from None
        except UnicodeEncodeError:
            raise RequestError(400, "invalid_text", "text contains unpaired UTF-16 surrogates") from None
        return text

    def _json_body(self) -> Any:
        """The body of a JSON request, parsed strictly (``proxy.parse_json``); compressed bodies are refused."""
        body = self.read_body()
        if self.headers.get("Content-Encoding", "identity").strip().lower() != "identity":
            raise RequestError(415, "unsupported_media_type", "compressed request bodies are not accepted")
        return body, parse_json(body)

    def _parse_screen_request(self) -> tuple[bytes | None, Any]:
        ctype = self.headers.get_content_type()
        if ctype == "application/json":
            _, obj = self._json_body()
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
            fields = parse_multipart(self.read_body(), self.headers.get_param("boundary"))
            if "text" not in fields:
                raise RequestError(400, "missing_field", "form field 'text' is required (may be empty)")
            image = fields.get("image")
            if image is not None and not image:
                raise RequestError(400, "invalid_image", "image is empty (0 bytes)")
            return image, fields["text"]  # bytes: check_text decodes them as strict UTF-8
        self.read_body()
        raise RequestError(415, "unsupported_media_type",
                           f"Content-Type {ctype!r} is not accepted; use application/json or multipart/form-data")

    # ---- routing ---------------------------------------------------------------------------------------
    def dispatch(self) -> None:
        try:
            self._route()
        except GuardUnavailable as e:
            log.error("request_id=%s guard failed: %s", self.request_id, e)
            self._error(503, "guard_error", f"the guard could not screen this request: {e}", "server_error")

    def _route(self) -> None:
        self.target = target = canonical_target(self.path)
        key, method, cfg = target.key, self.command, self.server.config
        local = {"/healthz": ("GET", self._health), "/v1/screen": ("POST", self._screen_endpoint),
                 **{path: ("POST", partial(answer, self)) for path, answer in moderation.ROUTES.items()}}
        if cfg.expose_info:
            local["/v1/info"] = ("GET", self._info)
        if key in local:
            allowed, answer = local[key]
            if method != allowed and not (allowed == "GET" and method == "HEAD"):
                self.read_body(required=False)
                return self._error(405, "method_not_allowed", f"use {allowed} {target.path}", headers={"Allow": allowed})
            return answer()
        if self.server.upstream is None:
            return self._error(404, "not_found", f"no route {method} {target.path}")
        if method in BODYLESS_METHODS:
            if self.declared_length():
                raise RequestError(400, "body_not_allowed", f"a {method} request with a body is not forwarded")
            return self._forward(None, {})
        kind = generation_kind(target)
        if kind is not None:
            if method != "POST":
                return self._error(405, "method_not_allowed", f"use POST {target.path}", headers={"Allow": "POST"})
            return self._generation(kind)
        if key in self.server.pass_routes:
            return self._forward(self.read_body(required=False), {"X-CrossGuard-Screened": "false"})
        raise RequestError(403, "route_not_screened", f"{method} {target.path} is not a route the guard screens; "
                                                      "its operator can let it through with --pass-route")

    def _health(self) -> None:
        self._json(200, {"status": "ok", "bundle_hash": self.server.screener.info()["bundle"]["hash"]})

    def _info(self) -> None:
        up = self.server.upstream
        self._json(200, dict({"status": "ok"}, **self.server.screener.info(), upstream=up.url if up else None,
                             pass_routes=sorted(self.server.pass_routes), limits=asdict(self.server.config)))

    # ---- screening ---------------------------------------------------------------------------------------
    def _screen_endpoint(self) -> None:
        data, raw_text = self._parse_screen_request()
        text = self._check_text(raw_text)
        image = self._decode_image(data) if data is not None else None
        if image is None and not text.strip():
            raise RequestError(400, "empty_request", "nothing to screen: text is empty and no image was given")
        verdicts = self._screen([(image, text)], [data])
        self._json(200, verdicts[0].to_dict())

    def screen_inputs(self, inputs: apis.Inputs) -> list:
        """Verdicts for every pair of ``inputs`` (texts checked, each image decoded once); [] when none."""
        texts = {t: self._check_text(t) for t in dict.fromkeys(t for _, t in inputs.pairs)}
        images = [self._decode_image(d) for d in inputs.images]
        pairs = [(None if i is None else images[i], texts[t]) for i, t in inputs.pairs]
        raw = [None if i is None else inputs.images[i] for i, _ in inputs.pairs]
        return self._screen(pairs, raw) if pairs else []

    def _screen(self, pairs: list[tuple[Any, str]], raw_images: list[bytes | None]) -> list:
        try:
            verdicts = self.server.screener.screen(pairs, self.server.config.screen_timeout_s)
        except InputError as e:
            raise RequestError.of(e) from None
        latency = (time.perf_counter() - self.t0) * 1000
        decider = max(range(len(verdicts)), key=lambda k: (verdicts[k].unsafe, verdicts[k].score))
        v, content = verdicts[decider], ""
        if self.server.config.log_content:
            raw = raw_images[decider]
            digest = hashlib.sha256(raw).hexdigest()[:16] if raw else None
            content = f" image_sha256={digest} text={pairs[decider][1]!r}"
        log.info("request_id=%s label=%s score=%.4f domain=%s modality=%s pairs=%d guard_ms=%.1f latency_ms=%.1f%s",
                 self.request_id, v.label, v.score, v.domain, v.modality, len(verdicts), v.latency_ms, latency, content)
        return verdicts

    # ---- proxy -------------------------------------------------------------------------------------------
    def _generation(self, kind: str) -> None:
        cfg = self.server.config
        body, obj = self._json_body()
        inputs = apis.collect_inputs(kind, obj, self.server.limits)
        try:
            verdicts = self.screen_inputs(inputs)
        except GuardUnavailable as e:
            if not cfg.fail_open:
                raise
            log.warning("request_id=%s guard failed, forwarding unscreened (--fail-open): %s", self.request_id, e)
            return self._forward(body, {"X-CrossGuard-Screened": "false", "X-CrossGuard-Error": "guard_error"})
        if not verdicts:  # e.g. only (ignored) remote images
            return self._forward(body, {"X-CrossGuard-Screened": "nothing-to-screen"})
        header = {"X-CrossGuard-Verdict": verdict_header(verdicts), "X-CrossGuard-Screened": "true"}
        if not any(v.unsafe for v in verdicts):
            return self._forward(body, header)
        answer, ctype = apis.refusal(kind, obj, cfg.refusal_message, self.request_id)
        if ctype == "text/event-stream":
            header["Cache-Control"] = "no-cache"
        self._send(200, answer, ctype, header)

    def _forward(self, body: bytes | None, extra_headers: dict[str, str]) -> None:
        """Send the request upstream (canonical path, same body) and stream the answer back chunk by chunk."""
        up, cfg = self.server.upstream, self.server.config
        headers = forward_headers(self.headers, up, None if body is None else len(body))
        try:
            conn, resp = open_upstream(up, self.command, self.target.forward, body, headers, cfg.upstream_timeout_s)
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


class GuardServer:
    """A running server: ``GuardServer(guard, config).start()`` (background thread) or ``.serve_forever()``."""

    def __init__(self, guard: Any, config: ServerConfig | None = None, max_batch: int = 8, max_wait_ms: float = 5.0):
        self.config = config or ServerConfig()
        upstream = Upstream.parse(self.config.upstream) if self.config.upstream else None
        if self.config.remote_images not in ("refuse", "ignore"):
            raise ValueError("remote_images must be 'refuse' or 'ignore'")
        self.screener = Screener(guard, max_batch=max_batch, max_wait_ms=max_wait_ms)
        self.httpd = _GuardHTTPServer(self.config, self.screener, upstream)
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
    parser.add_argument("--no-recheck", action="store_true",
                        help=NO_RECHECK_HELP)
    parser.add_argument("--max-batch", type=int, default=8, help="micro-batch size (1 disables batching)")
    parser.add_argument("--workers", type=int, default=0,
                        help="threads that resize a micro-batch's images and run its OCR side by side (0: auto)")
    parser.add_argument("--ocr-device", default="auto", choices=("auto", "cpu", "cuda"),
                        help="where the OCR runs (auto: the CPU, also when the graphs run on a GPU)")
    parser.add_argument("--max-wait-ms", type=float, default=5.0, help="longest wait to fill a micro-batch")
    parser.add_argument("--image-cache", type=int, default=0, metavar="N",
                        help="pictures whose reading (embedding, picture words, OCR text) a composite guard keeps, so "
                             "a picture sent again (each turn of a chat) is read once (default 0: off)")
    parser.add_argument("--engine", choices=("http", "triton"), default="http",
                        help="http: this server (default); triton: NVIDIA Triton via PyTriton, HTTP on --port, gRPC "
                             "on --port+1, metrics on --port+2 (runtime/triton_engine.py; ./setup.sh --triton)")
    parser.add_argument("--triton-instances", type=int, default=1, help="model instances with --engine triton")
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
    parser.add_argument("--max-messages", type=int, default=d.max_messages,
                        help="messages screened in one generation request; more get 413")
    parser.add_argument("--max-decodes", type=int, default=d.max_decodes,
                        help="images decoded at once across all requests (each may take ~0.2 GB at the pixel limit)")
    parser.add_argument("--pass-route", action="append", default=[], metavar="PATH",
                        help="forward POST/PUT/PATCH/DELETE to this upstream path unscreened (repeatable); other "
                             "routes that are not screened get 403")
    parser.add_argument("--expose-info", action="store_true",
                        help="answer GET /v1/info (backend, bundle, limits, upstream) to any client")
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
        remote_images=args.remote_images, refusal_message=args.refusal_message, log_content=args.log_content,
        max_messages=args.max_messages, max_decodes=args.max_decodes, pass_routes=tuple(args.pass_route),
        expose_info=args.expose_info)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = config_from_args(args)
    if args.upstream:
        try:
            Upstream.parse(args.upstream)
        except ValueError as e:
            log.error("%s", e)
            return 2
    if args.engine == "triton":
        from . import triton_engine

        if args.upstream:
            log.error("--engine triton serves the model only; the proxy (--upstream) needs the http engine")
            return 2
        try:
            triton_engine.check_interpreter()
        except triton_engine.TritonUnavailable as e:
            log.error("%s", e)
            return 2
    try:
        from .guard import Guard

        guard = Guard.load(bundle=args.bundle, device=args.device, precision=args.precision, workers=args.workers,
                           ocr_device=args.ocr_device, image_cache=args.image_cache, recheck=not args.no_recheck)
        guard.warmup(max_batch=args.max_batch)  # on a GPU: every micro-batch shape before the first request
    except Exception as e:  # noqa: BLE001 - a missing/corrupt bundle or backend: one clear line, exit 2
        log.error("cannot load the guard: %s: %s", type(e).__name__, e)
        return 2
    if args.engine == "triton":
        return _run_triton(guard, args, config)
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


def _run_triton(guard: Any, args: argparse.Namespace, config: ServerConfig) -> int:
    from . import triton_engine

    limits = ImageLimits(max_pixels=config.max_image_pixels, max_bytes=config.max_image_bytes)
    triton = triton_engine.start(guard, config.host, config.port, args.max_batch, args.max_wait_ms,
                                 args.triton_instances, limits, config.max_text_chars)
    log.info("crossguard on Triton: model %r, HTTP %s:%d, gRPC %d, metrics %d", triton_engine.MODEL_NAME,
             config.host, config.port, config.port + 1, config.port + 2)
    try:
        triton.serve()
    except KeyboardInterrupt:
        log.info("stopping")
    finally:
        triton.stop()
    return 0
