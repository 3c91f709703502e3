"""OpenAI-compatible pre-filter proxy: what ``crossguard serve --upstream URL`` screens and how it answers.

Pure helpers (no sockets here except :func:`open_upstream`); ``runtime/server.py`` wires them into the
HTTP handler.

What is screened in a ``POST .../chat/completions`` request (documented policy):

* **Text** = the text parts of the *last user message* (joined by newlines). The guard reads at most 64
  tokens, so prepending history would push the newest request out of its window. Earlier user turns were
  themselves the last user turn of an earlier request through the proxy and were screened then.
  The system prompt is set by the application operator, not the user, and assistant/tool turns are model
  output, so neither is screened.
* **Images** = every image of every *user* message (an image sent earlier stays in the context and can
  combine with the newest text: "now do what the picture shows"), each screened together with the text
  above. The request is unsafe when any pair is. With no image the text is screened alone.
  Images come as ``{"type": "image_url", "image_url": {"url": "data:image/...;base64,..."}}`` (or the
  url as a plain string), or as Ollama's ``"images": ["<base64>", ...]`` on a message.
* **Remote images** (http/https URLs) are never fetched by the guard (no network from the guard, no SSRF).
  ``--remote-images refuse`` (default) answers 400; ``ignore`` screens the request without them and
  forwards it; the upstream may then fetch an unscreened image, so only use it when the upstream cannot.
"""
from __future__ import annotations

import base64
import binascii
import http.client
import json
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from typing import Any

from .preprocess import InputError

# RFC 7230 hop-by-hop headers: never forwarded in either direction.
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
                        "trailer", "trailers", "transfer-encoding", "upgrade", "proxy-connection"})
DEFAULT_REFUSAL = "I can't help with that request."


class RequestError(ValueError):
    """The client's request is malformed; ``status`` and ``code`` become the JSON error."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    @classmethod
    def of(cls, error: InputError) -> "RequestError":
        """The HTTP form of an ``InputError``: its code, 413 when the input is over a limit, else 400."""
        return cls(413 if error.too_large else 400, error.code, str(error))


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


@dataclass
class ChatInputs:
    """What one chat request asks the guard to screen."""

    text: str
    images: list[bytes] = field(default_factory=list)
    remote_images_ignored: int = 0

    def pairs(self) -> list[tuple[bytes | None, str]]:
        """(image, text) pairs to screen: each image with the text, or the text alone."""
        return [(img, self.text) for img in self.images] or [(None, self.text)]


def _image_url(part: dict) -> Any:
    url = part.get("image_url")
    return url.get("url") if isinstance(url, dict) else url


def collect_chat_inputs(body: Any, *, max_image_bytes: int, max_images: int,
                        remote_images: str = "refuse") -> ChatInputs:
    """Extract the screened text and images from a chat-completions request body (policy: module doc)."""
    if not isinstance(body, dict):
        raise RequestError(400, "invalid_json", "request body must be a JSON object")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError(400, "invalid_field", "'messages' must be a non-empty array")
    user_messages = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise RequestError(400, "invalid_field", f"messages[{i}] must be an object")
        if m.get("role") == "user":
            user_messages.append((i, m))
    if not user_messages:
        raise RequestError(400, "invalid_field", "the request has no user message to screen")
    inputs = ChatInputs(text="")
    for pos, (i, m) in enumerate(user_messages):
        last = pos == len(user_messages) - 1
        content = m.get("content")
        texts: list[str] = []
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            for j, part in enumerate(content):
                if not isinstance(part, dict):
                    raise RequestError(400, "invalid_field", f"messages[{i}].content[{j}] must be an object")
                kind = part.get("type")
                if kind == "text":
                    if not isinstance(part.get("text"), str):
                        raise RequestError(400, "invalid_field", f"messages[{i}].content[{j}].text must be a string")
                    texts.append(part["text"])
                elif kind == "image_url":
                    url = _image_url(part)
                    if not isinstance(url, str):
                        raise RequestError(400, "invalid_field", f"messages[{i}].content[{j}].image_url.url must be a string")
                    if url.startswith("data:"):
                        inputs.images.append(decode_base64_image(url, max_image_bytes))
                    elif remote_images == "ignore":
                        inputs.remote_images_ignored += 1
                    else:
                        raise RequestError(400, "remote_image_refused",
                                           f"messages[{i}].content[{j}]: remote image URLs are not fetched or "
                                           "screened; send the image inline as a data: URL")
                elif kind in ("input_audio", "file", "video_url", "input_image"):
                    raise RequestError(400, "unsupported_content", f"content part type {kind!r} cannot be screened")
        elif content is not None:
            raise RequestError(400, "invalid_field", f"messages[{i}].content must be a string or an array")
        extra = m.get("images")  # Ollama's native field
        if extra is not None:
            if not isinstance(extra, list):
                raise RequestError(400, "invalid_field", f"messages[{i}].images must be an array")
            inputs.images.extend(decode_base64_image(s, max_image_bytes) for s in extra)
        if last:
            inputs.text = "\n".join(t for t in texts if t)
        if len(inputs.images) > max_images:
            raise RequestError(413, "too_many_images", f"more than {max_images} images in one request")
    return inputs


def verdict_header(verdicts: list) -> str:
    """Compact JSON for ``X-CrossGuard-Verdict``: the deciding verdict (the highest-scoring unsafe one,
    else the highest-scoring one; per-domain thresholds can make a lower score the unsafe one)."""
    v = max(verdicts, key=lambda x: (x.unsafe, x.score))
    return json.dumps({"label": v.label, "score": round(float(v.score), 4), "domain": v.domain,
                       "modality": v.modality}, separators=(",", ":"))


def refusal_completion(model: Any, message: str, request_id: str) -> dict:
    """A ``chat.completion`` object carrying the refusal, ``finish_reason: content_filter``."""
    return {
        "id": f"chatcmpl-crossguard-{request_id}", "object": "chat.completion", "created": int(time.time()),
        "model": model if isinstance(model, str) else "crossguard",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": message},
                     "logprobs": None, "finish_reason": "content_filter"}],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
    }


def refusal_sse(model: Any, message: str, request_id: str) -> bytes:
    """The same refusal as an SSE stream of ``chat.completion.chunk`` events ending in ``data: [DONE]``."""
    base = {"id": f"chatcmpl-crossguard-{request_id}", "object": "chat.completion.chunk",
            "created": int(time.time()), "model": model if isinstance(model, str) else "crossguard"}
    deltas = [({"role": "assistant", "content": ""}, None), ({"content": message}, None), ({}, "content_filter")]
    events = [dict(base, choices=[{"index": 0, "delta": d, "logprobs": None, "finish_reason": f}]) for d, f in deltas]
    return b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events) + b"data: [DONE]\n\n"


def api_error(code: str, message: str, kind: str = "invalid_request_error") -> dict:
    """Error body: ours (``code``/``message``) and OpenAI's (``type``) in one object."""
    return {"error": {"code": code, "message": message, "type": kind}}


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


def new_request_id() -> str:
    return uuid.uuid4().hex[:16]
