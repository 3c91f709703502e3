"""Moderation endpoints that gateways and scripts already speak: OpenAI's ``/v1/moderations`` and LiteLLM's
Generic Guardrail API. Both screen with the same guard and pairing rules as the proxy (``runtime/apis.py``).

``POST /v1/moderations`` (also ``/moderations``), OpenAI's multimodal moderation format:

* request ``{"input": ..., "model": optional}``; ``input`` is a string, a list of strings (one result each), or
  a list of ``{"type": "text", "text"}`` / ``{"type": "image_url", "image_url": {"url": "data:image/...;base64,..."}}``
  parts (one result for them all: each image with the joined text, or the text alone without an image). Remote
  image URLs are never fetched (``--remote-images``).
* response ``{"id", "model", "results": [{"flagged", "categories", "category_scores",
  "category_applied_input_types"}]}`` over the guard's 14 harm domains (``crossguard.taxonomy``):
  ``flagged`` is the guard's verdict; ``categories[d]`` is true when an unsafe pair's top domain is ``d``;
  ``category_scores[d]`` is the highest ``score * domain probability`` over the pairs (the probability that the
  request is unsafe *and* in ``d``); ``category_applied_input_types[d]`` lists the inputs ("text", "image") of the
  pair that gave that score.

``POST /beta/litellm_basic_guardrail_api``, LiteLLM's Generic Guardrail API (``guardrail: generic_guardrail_api``,
``api_base`` = this server): request ``{"texts": [...], "images": [...], "input_type": "request" | "response",
...}`` (other fields are accepted and not used); each text is screened alone and each image with the last text
(images as data: URLs or plain base64; remote URLs follow ``--remote-images``).
Answer ``{"action": "BLOCKED", "blocked_reason": ...}`` or ``{"action": "NONE"}``; the guard never rewrites text,
so it never answers ``GUARDRAIL_INTERVENED``. The guard is trained on requests: use it as a ``pre_call`` guardrail.
"""
from __future__ import annotations

from typing import Any

from crossguard.taxonomy import DOMAIN_NAMES

from . import apis
from .httpconn import RequestError

MODEL_NAME = "crossguard"


def _moderation_inputs(value: Any, limits: apis.Limits) -> list[apis.Inputs]:
    """``input`` -> one ``Inputs`` per result."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise RequestError(400, "invalid_field", "'input' must be a string or a non-empty array")
    if all(isinstance(v, str) for v in value):
        if len(value) > limits.max_messages:
            raise RequestError(413, "too_many_messages", f"more than {limits.max_messages} inputs in one request")
        return [_pairs([v], [], limits) for v in value]
    reader = apis.Reader(limits)
    reader.parts(value, "input")
    return [reader.inputs()]


def _pairs(texts: list[str], images: list[Any], limits: apis.Limits) -> apis.Inputs:
    """Each text alone and each image with the last text."""
    reader = apis.Reader(limits)
    for i, text in enumerate(texts):
        reader.message([text], newest=i == len(texts) - 1)
    ids = [reader.image(v, f"images[{k}]", raw_base64=True) for k, v in enumerate(images)]
    if ids and not texts:
        reader.message([], newest=True)
    if ids:
        reader.messages[-1][1].extend(i for i in ids if i is not None)
    return reader.inputs()


def moderation_result(inputs: apis.Inputs, verdicts: list) -> dict:
    """One OpenAI moderation result from the verdicts of one input's pairs (rules: module doc)."""
    scores = {d: 0.0 for d in DOMAIN_NAMES}
    applied: dict[str, list[str]] = {d: [] for d in DOMAIN_NAMES}
    flagged = {d: False for d in DOMAIN_NAMES}
    for (image, text), v in zip(inputs.pairs, verdicts):
        kinds = (["text"] if text.strip() else []) + (["image"] if image is not None else [])
        if v.unsafe and v.domain in flagged:
            flagged[v.domain] = True
        for d in DOMAIN_NAMES:
            value = float(v.score) * float(v.domain_scores.get(d, 0.0))
            if value > scores[d] or not applied[d]:
                scores[d], applied[d] = max(value, scores[d]), kinds
    return {"flagged": any(v.unsafe for v in verdicts), "categories": flagged,
            "category_scores": {d: round(s, 6) for d, s in scores.items()}, "category_applied_input_types": applied}


def moderations(handler: Any) -> None:
    """``POST /v1/moderations``."""
    _, body = handler._json_body()
    if not isinstance(body, dict) or "input" not in body:
        raise RequestError(400, "invalid_field", "field 'input' is required")
    all_inputs = _moderation_inputs(body["input"], handler.server.limits)
    results = []
    for inputs in all_inputs:
        if not inputs.pairs:
            raise RequestError(400, "empty_request", "nothing to screen: an input has no text and no image")
        results.append(moderation_result(inputs, handler.screen_inputs(inputs)))
    model = body.get("model") if isinstance(body.get("model"), str) else MODEL_NAME
    handler._json(200, {"id": f"modr-crossguard-{handler.request_id}", "model": model, "results": results})


def litellm_guardrail(handler: Any) -> None:
    """``POST /beta/litellm_basic_guardrail_api``."""
    _, body = handler._json_body()
    if not isinstance(body, dict):
        raise RequestError(400, "invalid_json", "request body must be a JSON object")
    texts, images = body.get("texts") or [], body.get("images") or []
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        raise RequestError(400, "invalid_field", "'texts' must be an array of strings")
    if not isinstance(images, list):
        raise RequestError(400, "invalid_field", "'images' must be an array")
    if len(texts) > handler.server.limits.max_messages:
        raise RequestError(413, "too_many_messages", f"more than {handler.server.limits.max_messages} texts")
    inputs = _pairs(texts, images, handler.server.limits)
    verdicts = handler.screen_inputs(inputs) if inputs.pairs else []
    unsafe = [v for v in verdicts if v.unsafe]
    if not unsafe:
        return handler._json(200, {"action": "NONE"})
    worst = max(unsafe, key=lambda v: v.score)
    handler._json(200, {"action": "BLOCKED", "blocked_reason": f"crossguard: unsafe (domain {worst.domain}, "
                                                               f"modality {worst.modality}, score {worst.score:.3f})"})


ROUTES = {"/v1/moderations": moderations, "/moderations": moderations,
          "/beta/litellm_basic_guardrail_api": litellm_guardrail}
