"""Pieces of the pre-filter proxy that are not HTTP handling: strict JSON, inline images, the upstream.

No sockets here except :func:`open_upstream`; ``runtime/server.py`` wires them into the HTTP handler, and
``runtime/apis.py`` says what is screened in each API.

JSON bodies are parsed once, strictly (:func:`parse_json`): UTF-8 only, and an object whose keys repeat is
refused, keys compared ignoring case. Parsers disagree on repeated keys (Python keeps the last copy, others the
first) and Go's ``encoding/json`` (Ollama) fills a field from a key in any case, so ``{"messages": [benign],
"Messages": [harmful]}`` would be screened on one copy while the upstream acts on the other. The parsed view
keeps keys case-folded: a lookup here finds a field under any casing the upstream would accept.
"""
from __future__ import annotations

import base64
import binascii
import http.client
import json
import urllib.parse
from dataclasses import dataclass
from typing import Any

from .httpconn import RequestError

# RFC 7230 hop-by-hop headers: never forwarded in either direction.
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
                        "trailer", "trailers", "transfer-encoding", "upgrade", "proxy-connection"})
DEFAULT_REFUSAL = "I can't help with that request."


def parse_json(body: bytes) -> Any:
    """Strict UTF-8 JSON with case-folded keys; ``RequestError`` (400) when invalid or a key repeats."""
    def unique_keys(pairs: list[tuple[str, Any]]) -> dict:
        out: dict = {}
        for key, value in pairs:
            folded = key.casefold()
            if folded in out:
                raise RequestError(400, "duplicate_key", f"JSON key {key!r} appears twice in one object "
                                                         "(compared ignoring case): refused as ambiguous")
            out[folded] = value
        return out
    try:
        return json.loads(body.decode("utf-8"), object_pairs_hook=unique_keys)
    except UnicodeDecodeError as e:
        raise RequestError(400, "invalid_json", f"body is not valid UTF-8: {e}") from None
    except RecursionError:
        raise RequestError(400, "invalid_json", "body is nested too deeply") from None
    except ValueError as e:
        if isinstance(e, RequestError):
            raise
        raise RequestError(400, "invalid_json", f"body is not valid JSON: {e}") from None


def decode_base64_image(value: str, max_bytes: int) -> bytes:
    """Base64 string or ``data:image/...;base64,`` URL -> bytes; ``RequestError`` when malformed or too big."""
    if not isinstance(value, str):
        raise RequestError(400, "invalid_field", f"image must be a base64 string, got {type(value).__name__}")
    payload = value
    if value.startswith("data:"):
        header, sep, payload = value.partition(",")
        if not sep or not header.endswith(";base64"):
            raise RequestError(400, "bad_base64", "image data URL must look like data:image/png;base64,...")
        if not header[5:].startswith("image/"):
            raise RequestError(415, "unsupported_media_type", f"data URL media type {header[5:-7]!r} is not an image")
    payload = "".join(payload.split())  # base64 in JSON is often wrapped at 76 columns
    if not payload:
        raise RequestError(400, "invalid_image", "image is empty (0 bytes)")
    if len(payload) // 4 * 3 > max_bytes:
        raise RequestError(413, "image_too_large", f"image is about {len(payload) // 4 * 3} bytes; the limit is {max_bytes}")
    try:
        if "-" in payload or "_" in payload:
            return base64.urlsafe_b64decode(payload.encode("ascii"))
        return base64.b64decode(payload.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError) as e:
        raise RequestError(400, "bad_base64", f"image is not valid base64: {e}") from None


def verdict_header(verdicts: list) -> str:
    """Compact JSON for ``X-CrossGuard-Verdict``: the deciding verdict (the highest-scoring unsafe one,
    else the highest-scoring one; per-domain thresholds can make a lower score the unsafe one)."""
    v = max(verdicts, key=lambda x: (x.unsafe, x.score))
    return json.dumps({"label": v.label, "score": round(float(v.score), 4), "domain": v.domain,
                       "modality": v.modality}, separators=(",", ":"))


@dataclass(frozen=True)
class Upstream:
    """Where safe requests go: scheme, host, port and a path prefix (``http://127.0.0.1:8080``)."""

    scheme: str
    host: str
    port: int
    prefix: str = ""

    @classmethod
    def parse(cls, url: str) -> Upstream:
        u = urllib.parse.urlsplit(url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError(f"upstream must be an http:// or https:// URL, got {url!r}")
        return cls(u.scheme, u.hostname, u.port or (443 if u.scheme == "https" else 80), u.path.rstrip("/"))

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}{self.prefix}"


def forward_headers(headers, upstream: Upstream, body_len: int | None) -> dict[str, str]:
    """Client headers minus hop-by-hop (and those named in ``Connection``), Host and length set anew."""
    named = {t.strip().lower() for v in headers.get_all("Connection", []) for t in v.split(",")}
    out = {k: v for k, v in headers.items()
           if k.lower() not in HOP_BY_HOP and k.lower() not in named and k.lower() not in ("host", "content-length", "expect")}
    default_port = 443 if upstream.scheme == "https" else 80
    out["Host"] = upstream.host if upstream.port == default_port else f"{upstream.host}:{upstream.port}"
    if body_len is not None:
        out["Content-Length"] = str(body_len)
    return out


def open_upstream(upstream: Upstream, method: str, path: str, body: bytes | None, headers: dict[str, str],
                  timeout: float) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    """Send one request upstream; return the connection and its (unread) response. Raises ``OSError``."""
    cls = http.client.HTTPSConnection if upstream.scheme == "https" else http.client.HTTPConnection
    conn = cls(upstream.host, upstream.port, timeout=timeout)
    try:
        conn.request(method, upstream.prefix + path, body=body, headers=headers)
        return conn, conn.getresponse()
    except BaseException:
        conn.close()
        raise
