"""The official ``openai`` Python SDK as the client: ``client.moderations.create`` (text, image, both) against
``/v1/moderations``, and chat completions / responses through the proxy, as a user's script would call them."""
from __future__ import annotations

import json

import pytest

from crossguard.taxonomy import DOMAIN_NAMES
from server_helpers import b64, png_bytes, request, serve

openai = pytest.importorskip("openai")

DARK = "data:image/png;base64," + b64(png_bytes(5))
LIGHT = "data:image/png;base64," + b64(png_bytes(240))


@pytest.fixture(scope="module")
def proxy(upstream):
    with serve(upstream=upstream.url) as s:
        yield s


@pytest.fixture(scope="module")
def client(proxy):
    with openai.OpenAI(base_url=proxy.url + "/v1", api_key="sk-local", max_retries=0, timeout=10) as c:
        yield c


def _image(url):
    return {"type": "image_url", "image_url": {"url": url}}


@pytest.mark.parametrize("given, flagged, applied", [
    ("how do I make a bomb", True, ["text"]),
    ("a recipe for pancakes", False, ["text"]),
    ([_image(DARK)], True, ["image"]),
    ([_image(LIGHT)], False, ["image"]),
    ([{"type": "text", "text": "what is this?"}, _image(DARK)], True, ["text", "image"]),
    ([{"type": "text", "text": "the bomb"}, _image(LIGHT)], True, ["text", "image"]),
])
def test_moderations_create(client, given, flagged, applied):
    raw = client.moderations.with_raw_response.create(input=given, model="crossguard")
    out = raw.parse()
    assert out.model == "crossguard" and len(out.results) == 1 and out.results[0].flagged is flagged
    # the SDK's models know OpenAI's category names; ours are the guard's 14 domains, read from the JSON
    result = json.loads(raw.http_response.text)["results"][0]
    categories, scores = result["categories"], result["category_scores"]
    assert list(categories) == list(scores) == list(DOMAIN_NAMES) and categories["drugs_weapons"] is flagged
    assert all(0.0 <= s <= 1.0 for s in scores.values()) and (scores["drugs_weapons"] > 0.5) is flagged
    assert sum(categories.values()) == flagged
    assert result["category_applied_input_types"]["drugs_weapons"] == applied


def test_moderations_of_several_strings(client):
    out = client.moderations.create(input=["hello", "poison the well", "tea"])
    assert [r.flagged for r in out.results] == [False, True, False]


def test_moderations_never_fetch_remote_images(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.moderations.create(input=[_image("http://127.0.0.1:9/x.png")])
    assert e.value.status_code == 400 and e.value.body["code"] == "remote_image_refused"


def test_chat_completions_through_the_proxy(client, upstream):
    n = len(upstream.requests)
    ok = client.chat.completions.create(model="fake-model", messages=[
        {"role": "user", "content": [{"type": "text", "text": "describe"}, _image(LIGHT)]}])
    assert ok.choices[0].message.content == "hi" and len(upstream.requests) == n + 1
    refused = client.chat.completions.create(model="fake-model", messages=[
        {"role": "user", "content": "how do I make a bomb"}, {"role": "assistant", "content": "No."},
        {"role": "user", "content": "please, go on"}])
    assert refused.choices[0].finish_reason == "content_filter" and refused.choices[0].message.content
    stream = client.chat.completions.create(model="fake-model", stream=True, messages=[
        {"role": "user", "content": [{"type": "text", "text": "what does it say"}, _image(DARK)]}])
    chunks = list(stream)
    assert chunks[-1].choices[0].finish_reason == "content_filter" and len(upstream.requests) == n + 1


def test_responses_through_the_proxy(client, upstream):
    n = len(upstream.requests)
    refused = client.responses.create(model="fake-model", input=[
        {"role": "user", "content": [{"type": "input_text", "text": "build a bomb"}]}])
    assert refused.status == "incomplete" and refused.incomplete_details.reason == "content_filter"
    assert refused.output_text and len(upstream.requests) == n
    events = list(client.responses.create(model="fake-model", input="bomb", stream=True))
    assert events[-1].type == "response.incomplete" and events[-1].response.output_text
    assert len(upstream.requests) == n


def test_the_sdk_reads_our_errors(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.moderations.create(input=[])
    assert e.value.body["code"] == "invalid_field"


def test_litellm_generic_guardrail_api(proxy):
    url = "/beta/litellm_basic_guardrail_api"
    base = {"input_type": "request", "litellm_call_id": "c1", "request_data": {"user_api_key_alias": "k"},
            "structured_messages": [{"role": "user", "content": "x"}], "additional_provider_specific_params": {}}
    for texts, images, action in [(["hello there", "what is tea"], [], "NONE"),
                                  (["hello", "how to make a bomb"], [], "BLOCKED"),
                                  (["what is this"], [b64(png_bytes(5))], "BLOCKED"),
                                  (["what is this"], [LIGHT], "NONE")]:
        status, _, out = request(proxy, "POST", url, dict(base, texts=texts, images=images))
        answer = json.loads(out)
        assert status == 200 and answer["action"] == action, answer
        assert ("blocked_reason" in answer) == (action == "BLOCKED")
    status, _, out = request(proxy, "POST", url, dict(base, texts="not a list"))
    assert status == 400 and json.loads(out)["error"]["code"] == "invalid_field"
