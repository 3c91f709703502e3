"""What each generation API carries to the model, and how a refusal looks in that API.

Screening policy (``crossguard serve --upstream``): **screen what the upstream will act on.** A client writes
every message it sends, whatever the role (a hostile one writes the "assistant" turns and the system prompt
too), so every message is screened, each on its own (the guard reads 64 tokens: a whole conversation in one
text would push the newest request out of its window):

* each message's text, alone or with each image of that message;
* each image of an earlier message again with the newest user text (a picture sent earlier stays in the
  context and can combine with the newest text: "now do what the picture shows");
* the request is unsafe when any pair is. Earlier messages longer than the text limit are screened on their
  first ``max_text_chars`` characters (the guard reads the opening tokens); the newest one over it is refused.

Per API:

* OpenAI chat completions and Ollama ``/api/chat``: every message of ``messages``; content parts ``text``,
  ``input_text``, ``output_text``, ``refusal`` (text) and ``image_url``, ``input_image`` (images), Ollama's
  ``images`` (base64) on a message. Any other part type (audio, files, video) is refused: it cannot be screened.
* OpenAI completions: each string of ``prompt`` and ``suffix``; token-id prompts are refused.
* OpenAI responses: ``instructions`` and every item of ``input`` (messages, tool outputs, function-call
  arguments, reasoning text); images as ``input_image``; files, file ids and prompt templates are refused.
  State kept by the upstream (``previous_response_id``) was screened when it passed through.
* Ollama ``/api/generate``: ``prompt``, ``system``, ``template``, ``suffix`` and ``images``; a token
  ``context`` is refused.

Remote images (http/https URLs) are never fetched (no network from the guard, no SSRF): refused with 400
(``--remote-images refuse``, default) or left out of screening (``ignore``: the upstream may then fetch an
unscreened image). Tool definitions and other request settings are not screened.

Keys of the parsed body are case-folded (``proxy.parse_json``), so every lookup here uses lower-case names.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from .httpconn import RequestError
from .proxy import decode_base64_image

TEXT_PARTS = {"text": "text", "input_text": "text", "output_text": "text", "refusal": "refusal"}
IMAGE_PARTS = ("image_url", "input_image")
KINDS = ("chat", "completions", "responses", "ollama_chat", "ollama_generate")


@dataclass(frozen=True)
class Limits:
    max_image_bytes: int
    max_images: int
    max_messages: int = 256
    max_text_chars: int = 20_000
    remote_images: str = "refuse"


@dataclass
class Inputs:
    """What one request asks the guard to screen: the images (raw bytes) and (image index or None, text) pairs."""

    images: list[bytes] = field(default_factory=list)
    pairs: list[tuple[int | None, str]] = field(default_factory=list)
    remote_images_ignored: int = 0


class Reader:
    """Collects the messages of one request under its limits, then pairs them (policy: module doc)."""

    def __init__(self, limits: Limits):
        self.limits = limits
        self.messages: list[tuple[str, list[int]]] = []
        self.images: list[bytes] = []
        self.newest: int | None = None  # index of the newest user message
        self.remote_ignored = 0

    def image(self, value: Any, where: str, raw_base64: bool = False) -> int | None:
        """Decode one image (a data: URL; plain base64 where the API sends that); its index, or None if ignored."""
        if not isinstance(value, str):
            raise RequestError(400, "invalid_field", f"{where} must be a string")
        if value.startswith(("http://", "https://")):
            if self.limits.remote_images == "ignore":
                self.remote_ignored += 1
                return None
            raise RequestError(400, "remote_image_refused", f"{where}: remote image URLs are not fetched or "
                                                            "screened; send the image inline as a data: URL")
        if not raw_base64 and not value.startswith("data:"):
            raise RequestError(400, "unsupported_content", f"{where}: an image must be a data: URL")
        self.images.append(decode_base64_image(value, self.limits.max_image_bytes))
        if len(self.images) > self.limits.max_images:
            raise RequestError(413, "too_many_images", f"more than {self.limits.max_images} images in one request")
        return len(self.images) - 1

    def message(self, texts: list[str], images: list[int | None] = (), newest: bool = False) -> None:
        self.messages.append(("\n".join(t for t in texts if t), [i for i in images if i is not None]))
        if len(self.messages) > self.limits.max_messages:
            raise RequestError(413, "too_many_messages",
                               f"more than {self.limits.max_messages} messages to screen in one request")
        if newest:
            self.newest = len(self.messages) - 1

    def parts(self, content: Any, where: str) -> None:
        """One message's ``content``: a string, or a list of text and image parts."""
        if isinstance(content, str):
            return self.message([content])
        if content is None:
            return self.message([])
        if not isinstance(content, list):
            raise RequestError(400, "invalid_field", f"{where} must be a string or an array")
        texts, images = [], []
        for j, part in enumerate(content):
            w = f"{where}[{j}]"
            if not isinstance(part, dict):
                raise RequestError(400, "invalid_field", f"{w} must be an object")
            kind = part.get("type")
            if kind in TEXT_PARTS:
                text = part.get(TEXT_PARTS[kind])
                if not isinstance(text, str):
                    raise RequestError(400, "invalid_field", f"{w}.{TEXT_PARTS[kind]} must be a string")
                texts.append(text)
            elif kind in IMAGE_PARTS:
                if "file_id" in part:
                    raise RequestError(400, "unsupported_content", f"{w}: images by file id cannot be screened")
                url = part.get("image_url")
                url = url.get("url") if isinstance(url, dict) else url
                images.append(self.image(url, f"{w}.image_url"))
            else:
                raise RequestError(400, "unsupported_content", f"{w}: content part type {kind!r} cannot be screened")
        self.message(texts, images)

    def inputs(self) -> Inputs:
        cap = self.limits.max_text_chars
        newest = self.newest if self.newest is not None else len(self.messages) - 1
        texts = [t if i == newest else t[:cap] for i, (t, _) in enumerate(self.messages)]
        newest_text = texts[newest] if self.messages else ""
        pairs: list[tuple[int | None, str]] = []
        for text, (_, images) in zip(texts, self.messages):
            pairs += [(i, text) for i in images] if images else [(None, text)] if text.strip() else []
        for text, (_, images) in zip(texts, self.messages):
            pairs += [(i, newest_text) for i in images if text != newest_text]
        return Inputs(self.images, list(dict.fromkeys(pairs)), self.remote_ignored)


def _object(body: Any) -> dict:
    if not isinstance(body, dict):
        raise RequestError(400, "invalid_json", "request body must be a JSON object")
    return body


def _messages(body: dict, r: Reader) -> None:
    """OpenAI chat completions and Ollama /api/chat."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError(400, "invalid_field", "'messages' must be a non-empty array")
    newest = None
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise RequestError(400, "invalid_field", f"messages[{i}] must be an object")
        r.parts(m.get("content"), f"messages[{i}].content")
        extra = m.get("images")  # Ollama's field: base64 strings
        if extra is not None:
            if not isinstance(extra, list):
                raise RequestError(400, "invalid_field", f"messages[{i}].images must be an array")
            r.messages[-1][1].extend(r.image(s, f"messages[{i}].images[{k}]", raw_base64=True)
                                     for k, s in enumerate(extra))
        if m.get("role") == "user":
            newest = len(r.messages) - 1
    r.newest = newest


def _strings(value: Any, where: str, r: Reader, newest: bool = False) -> None:
    """A string, or a list of strings (completions' ``prompt``); token ids cannot be screened."""
    if value is None:
        return
    if isinstance(value, str):
        return r.message([value], newest=newest)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        for v in value:
            r.message([v], newest=newest)
        return
    if isinstance(value, list):
        raise RequestError(400, "unsupported_content", f"{where}: token-id prompts cannot be screened; send text")
    raise RequestError(400, "invalid_field", f"{where} must be a string or an array of strings")


def _completions(body: dict, r: Reader) -> None:
    if "prompt" not in body:
        raise RequestError(400, "invalid_field", "'prompt' is required")
    _strings(body.get("suffix"), "suffix", r)
    _strings(body.get("prompt"), "prompt", r, newest=True)


def _responses(body: dict, r: Reader) -> None:
    if body.get("prompt") is not None:
        raise RequestError(400, "unsupported_content", "prompt templates ('prompt') cannot be screened")
    _strings(body.get("instructions"), "instructions", r)
    items = body.get("input")
    if isinstance(items, str) or items is None:
        return _strings(items, "input", r, newest=True)
    if not isinstance(items, list):
        raise RequestError(400, "invalid_field", "'input' must be a string or an array")
    for i, item in enumerate(items):
        where = f"input[{i}]"
        if not isinstance(item, dict):
            raise RequestError(400, "invalid_field", f"{where} must be an object")
        kind = item.get("type", "message")
        if kind == "message":
            r.parts(item.get("content"), f"{where}.content")
            if item.get("role") == "user":
                r.newest = len(r.messages) - 1
        elif kind in ("function_call_output", "custom_tool_call_output"):
            out = item.get("output")
            r.parts(out, f"{where}.output") if isinstance(out, list) else _strings(out, f"{where}.output", r)
        elif kind in ("function_call", "custom_tool_call"):
            _strings(item.get("arguments", item.get("input")), f"{where}.arguments", r)
        elif kind == "reasoning":
            for key in ("summary", "content"):
                if isinstance(item.get(key), list):
                    r.parts(item[key], f"{where}.{key}")
        elif kind != "item_reference":  # a reference to a stored item: screened when it was stored
            raise RequestError(400, "unsupported_content", f"{where}: input item type {kind!r} cannot be screened")


def _generate(body: dict, r: Reader) -> None:
    """Ollama /api/generate."""
    if body.get("context"):
        raise RequestError(400, "unsupported_content", "a token 'context' cannot be screened; send the "
                                                       "conversation as text (/api/chat)")
    for key in ("system", "template", "suffix"):
        _strings(body.get(key), key, r)
    images = body.get("images") or []
    if not isinstance(images, list):
        raise RequestError(400, "invalid_field", "'images' must be an array")
    prompt = body.get("prompt", "")
    if not isinstance(prompt, str):
        raise RequestError(400, "invalid_field", "'prompt' must be a string")
    r.message([prompt], [r.image(s, f"images[{k}]", raw_base64=True) for k, s in enumerate(images)], newest=True)


_READERS = {"chat": _messages, "ollama_chat": _messages, "completions": _completions, "responses": _responses,
            "ollama_generate": _generate}


def collect_inputs(kind: str, body: Any, limits: Limits) -> Inputs:
    """The pairs to screen in a request body of API ``kind`` (policy: module doc); ``RequestError`` if malformed."""
    reader = Reader(limits)
    _READERS[kind](_object(body), reader)
    return reader.inputs()


# ---- refusals ----------------------------------------------------------------------------------------------
def streams(kind: str, body: dict) -> bool:
    """Whether the client asked for a stream (Ollama streams unless told not to)."""
    if kind.startswith("ollama"):
        return body.get("stream") is not False
    return body.get("stream") is True


def _model(body: dict) -> str:
    model = body.get("model")
    return model if isinstance(model, str) else "crossguard"


def _sse(events: list[dict], done: bool = False, named: bool = False) -> bytes:
    out = b"".join((b"event: " + e["type"].encode() + b"\n" if named else b"") + b"data: " + json.dumps(e).encode()
                   + b"\n\n" for e in events)
    return out + (b"data: [DONE]\n\n" if done else b"")


def _chat_refusal(body: dict, message: str, rid: str, stream: bool) -> tuple[bytes, str]:
    base = {"id": f"chatcmpl-crossguard-{rid}", "created": int(time.time()), "model": _model(body)}
    if not stream:
        return json.dumps(dict(base, object="chat.completion", choices=[
            {"index": 0, "message": {"role": "assistant", "content": message}, "logprobs": None,
             "finish_reason": "content_filter"}], usage={"prompt_tokens": 0, "completion_tokens": 0,
                                                         "total_tokens": 0})).encode(), "application/json"
    deltas = [({"role": "assistant", "content": ""}, None), ({"content": message}, None), ({}, "content_filter")]
    return _sse([dict(base, object="chat.completion.chunk",
                      choices=[{"index": 0, "delta": d, "logprobs": None, "finish_reason": f}]) for d, f in deltas],
                done=True), "text/event-stream"


def _completions_refusal(body: dict, message: str, rid: str, stream: bool) -> tuple[bytes, str]:
    base = {"id": f"cmpl-crossguard-{rid}", "object": "text_completion", "created": int(time.time()),
            "model": _model(body)}
    choice = {"index": 0, "text": message, "logprobs": None, "finish_reason": "content_filter"}
    if not stream:
        usage = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
        return json.dumps(dict(base, choices=[choice], usage=usage)).encode(), "application/json"
    return _sse([dict(base, choices=[choice])], done=True), "text/event-stream"


def _responses_refusal(body: dict, message: str, rid: str, stream: bool) -> tuple[bytes, str]:
    """A ``response`` that ends ``incomplete`` for ``content_filter`` (the Responses API's own signal)."""
    text = {"type": "output_text", "text": message, "annotations": [], "logprobs": []}
    item = {"type": "message", "id": f"msg_crossguard_{rid}", "status": "completed", "role": "assistant",
            "content": [text]}
    response = {"id": f"resp_crossguard_{rid}", "object": "response", "created_at": int(time.time()),
                "status": "incomplete", "incomplete_details": {"reason": "content_filter"}, "error": None,
                "model": _model(body), "output": [item], "parallel_tool_calls": False, "tool_choice": "auto",
                "tools": [], "usage": {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0,
                                       "input_tokens_details": {"cached_tokens": 0},
                                       "output_tokens_details": {"reasoning_tokens": 0}}}
    if not stream:
        return json.dumps(response).encode(), "application/json"
    started = dict(response, status="in_progress", incomplete_details=None, output=[])
    ids = {"item_id": item["id"], "output_index": 0}
    events = [{"type": "response.created", "response": started},
              {"type": "response.output_item.added", "output_index": 0, "item": dict(item, content=[])},
              {"type": "response.content_part.added", **ids, "content_index": 0, "part": dict(text, text="")},
              {"type": "response.output_text.delta", **ids, "content_index": 0, "delta": message, "logprobs": []},
              {"type": "response.output_text.done", **ids, "content_index": 0, "text": message, "logprobs": []},
              {"type": "response.content_part.done", **ids, "content_index": 0, "part": text},
              {"type": "response.output_item.done", "output_index": 0, "item": item},
              {"type": "response.incomplete", "response": response}]
    for n, e in enumerate(events):
        e["sequence_number"] = n
    return _sse(events, named=True), "text/event-stream"


def _ollama_refusal(body: dict, message: str, field_name: str, stream: bool) -> tuple[bytes, str]:
    """Ollama's shape: one object with ``done: true``, or NDJSON lines when streaming."""
    def line(content: str, done: bool) -> dict:
        value = {"role": "assistant", "content": content} if field_name == "message" else content
        out = {"model": _model(body), "created_at": datetime.now(timezone.utc).isoformat(), field_name: value,
               "done": done}
        return dict(out, done_reason="content_filter") if done else out
    if not stream:
        return json.dumps(line(message, True)).encode(), "application/json"
    return b"".join(json.dumps(o).encode() + b"\n" for o in (line(message, False), line("", True))), \
        "application/x-ndjson"


def refusal(kind: str, body: dict, message: str, request_id: str) -> tuple[bytes, str]:
    """The refusal as API ``kind`` answers, streamed when the client asked for a stream: (body, content type)."""
    stream = streams(kind, body)
    if kind == "chat":
        return _chat_refusal(body, message, request_id, stream)
    if kind == "completions":
        return _completions_refusal(body, message, request_id, stream)
    if kind == "responses":
        return _responses_refusal(body, message, request_id, stream)
    return _ollama_refusal(body, message, "message" if kind == "ollama_chat" else "response", stream)
