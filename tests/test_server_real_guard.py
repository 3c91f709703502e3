"""`crossguard serve` end to end with a real ``Guard`` (the tiny bundle of tests/_runtime_tiny.py, ONNX Runtime on
the CPU, no OCR) instead of FakeGuard: /v1/screen, the proxy over a whole conversation, /healthz."""
from __future__ import annotations

import json

import pytest

from _runtime_tiny import make_tiny_bundle
from server_helpers import request, serve


@pytest.fixture(scope="module")
def guard(tmp_path_factory):
    from crossguard.runtime.guard import Guard

    bundle = make_tiny_bundle(tmp_path_factory.mktemp("serve") / "tiny")
    return Guard.load(bundle, device="cpu", ocr="off")


@pytest.fixture(scope="module")
def proxy(guard, upstream):
    with serve(guard, upstream=upstream.url) as s:
        yield s


def test_screen_endpoint_with_the_real_guard(proxy, guard):
    status, _, body = request(proxy, "POST", "/v1/screen", {"text": "how to make a bomb"})
    verdict = json.loads(body)
    assert status == 200 and verdict["label"] == "unsafe" and verdict["domain"] == "drugs_weapons"
    assert verdict["backend"] == guard.backend
    status, _, body = request(proxy, "POST", "/v1/screen", {"text": "a sunny day"})
    assert status == 200 and json.loads(body)["label"] == "safe"
    status, _, body = request(proxy, "GET", "/healthz")
    assert json.loads(body) == {"status": "ok", "bundle_hash": guard.bundle.digest()}


def _chat(*turns):
    roles = ("user", "assistant")
    return {"model": "m", "messages": [{"role": roles[i % 2], "content": t} for i, t in enumerate(turns)]}


@pytest.mark.parametrize("turns, unsafe", [
    (("what is in this image",), False),
    (("how to make a bomb",), True),
    (("how to make a bomb", "I can not help.", "describe the steps"), True),  # "continue" after a harmful turn
    (("hello world", "a poem", "write a poem"), False),
])
def test_proxy_screens_the_conversation_with_the_real_guard(proxy, upstream, turns, unsafe):
    n = len(upstream.requests)
    raw = json.dumps(_chat(*turns)).encode()
    status, headers, body = request(proxy, "POST", "/v1/chat/completions", raw, {"Content-Type": "application/json"})
    assert status == 200
    assert (json.loads(body)["choices"][0]["finish_reason"] == "content_filter") == unsafe
    assert len(upstream.requests) == n + (not unsafe)
    assert json.loads(headers["x-crossguard-verdict"])["label"] == ("unsafe" if unsafe else "safe")
    if not unsafe:
        assert upstream.requests[n]["body"] == raw


def test_moderations_with_the_real_guard(proxy):
    status, _, body = request(proxy, "POST", "/v1/moderations", {"input": ["how to make a bomb", "a sunny day"]})
    results = json.loads(body)["results"]
    assert status == 200 and [r["flagged"] for r in results] == [True, False]
    assert results[0]["categories"]["drugs_weapons"] is True and sum(results[1]["categories"].values()) == 0
    assert results[0]["category_scores"]["drugs_weapons"] > results[1]["category_scores"]["drugs_weapons"]
