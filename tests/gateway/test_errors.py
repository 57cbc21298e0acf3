"""Every bad request and every upstream failure gets the right status and OpenAI's error shape."""

from __future__ import annotations

import json

import openai
import pytest

from tests.support.openai_errors import assert_openai_error
from tests.support.plain_http import request

pytestmark = pytest.mark.django_db(transaction=True)

HI = [{"role": "user", "content": "hi"}]


def post(gateway, party, body, path="/v1/chat/completions", method="POST"):
    raw = body if isinstance(body, str | bytes) else json.dumps(body)
    return request(method, gateway.url + path, raw,
                   {"Authorization": f"Bearer {party.key}", "Content-Type": "application/json"})


@pytest.fixture
def acme_block(owner, upstream_block):
    return upstream_block(owner.organization, block_id="acme-ok")


BAD_BODIES = [
    ("{not json", None),
    ("[1, 2]", None),
    ("", None),
    ({"model": "acme-ok"}, "messages"),
    ({"messages": HI}, "model"),
    ({"model": 5, "messages": HI}, "model"),
    ({"model": "acme-ok", "messages": []}, "messages"),
    ({"model": "acme-ok", "messages": "hi"}, "messages"),
    ({"model": "acme-ok", "messages": ["hi"]}, "messages[0]"),
    ({"model": "acme-ok", "messages": [{"role": "wizard", "content": "hi"}]}, "messages[0].role"),
    ({"model": "acme-ok", "messages": [{"role": "user"}]}, "messages[0].content"),
    ({"model": "acme-ok", "messages": [{"role": "user", "content": 42}]}, "messages[0].content"),
    ({"model": "acme-ok", "messages": [{"role": "user", "content": [{"type": "text"}]}]},
     "messages[0].content[0].text"),
    ({"model": "acme-ok", "messages": [{"role": "user", "content": [{"type": "video"}]}]},
     "messages[0].content[0]"),
    ({"model": "acme-ok", "messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id"),
    ({"model": "acme-ok", "messages": HI, "temperature": "hot"}, "temperature"),
    ({"model": "acme-ok", "messages": HI, "temperature": 3}, "temperature"),
    ({"model": "acme-ok", "messages": HI, "top_p": 1.5}, "top_p"),
    ({"model": "acme-ok", "messages": HI, "max_tokens": 0}, "max_tokens"),
    ({"model": "acme-ok", "messages": HI, "max_tokens": True}, "max_tokens"),
    ({"model": "acme-ok", "messages": HI, "max_completion_tokens": 1.5}, "max_completion_tokens"),
    ({"model": "acme-ok", "messages": HI, "n": 99}, "n"),
    ({"model": "acme-ok", "messages": HI, "n": 0}, "n"),
    ({"model": "acme-ok", "messages": HI, "stop": 7}, "stop"),
    ({"model": "acme-ok", "messages": HI, "stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ({"model": "acme-ok", "messages": HI, "seed": "x"}, "seed"),
    ({"model": "acme-ok", "messages": HI, "stream": "yes"}, "stream"),
    ({"model": "acme-ok", "messages": HI, "stream_options": {"include_usage": True}}, "stream_options"),
    ({"model": "acme-ok", "messages": HI, "stream": True, "stream_options": {"include_usage": 1}},
     "stream_options.include_usage"),
    ({"model": "acme-ok", "messages": HI, "tools": [{"type": "function"}]}, "tools[0]"),
    ({"model": "acme-ok", "messages": HI, "tool_choice": "sometimes"}, "tool_choice"),
    ({"model": "acme-ok", "messages": HI, "response_format": {"type": "yaml"}}, "response_format"),
]


def test_it_rejects_every_bad_body_with_400_naming_the_param(live_gateway, owner, acme_block):
    # One test for the whole table: each case is a request, not a database reset.
    wrong = []
    for body, param in BAD_BODIES:
        reply = post(live_gateway, owner, body)
        error = reply.json().get("error", {}) if reply.body.startswith(b"{") else {}
        if reply.status != 400 or error.get("param") != param or error.get("type") != "invalid_request_error" \
                or set(error) != {"message", "type", "param", "code"}:
            wrong.append((body, reply.status, reply.body[:200]))
    assert wrong == []


def test_it_refuses_a_body_over_8_mib_with_413(live_gateway, owner):
    huge = json.dumps({"model": "acme-ok", "messages": [{"role": "user", "content": "x" * (9 * 1024 * 1024)}]})
    assert_openai_error(post(live_gateway, owner, huge), 413, "request_too_large")


def test_it_answers_404_model_not_found_for_an_unknown_model(live_gateway, owner, acme_block):
    assert_openai_error(post(live_gateway, owner, {"model": "nope", "messages": HI}), 404, "model_not_found",
                        "model")


def test_it_answers_404_for_a_disabled_block(live_gateway, owner, upstream_block):
    upstream_block(owner.organization, block_id="acme-off", enabled=False)
    assert_openai_error(post(live_gateway, owner, {"model": "acme-off", "messages": HI}), 404, "model_not_found")


def test_it_answers_401_without_a_key(live_gateway, acme_block):
    reply = request("POST", live_gateway.url + "/v1/chat/completions", json.dumps({"model": "acme-ok",
                                                                                   "messages": HI}))
    assert_openai_error(reply, 401, "missing_api_key")


def test_it_answers_401_for_a_malformed_authorization_header(live_gateway):
    reply = request("GET", live_gateway.url + "/v1/models", headers={"Authorization": "Token abc"})
    assert_openai_error(reply, 401)


def test_it_answers_405_in_openai_shape_for_a_wrong_method(live_gateway, owner):
    reply = post(live_gateway, owner, "", method="GET")
    assert_openai_error(reply, 405, "method_not_allowed")
    assert reply.headers["allow"] == "POST"
    assert_openai_error(post(live_gateway, owner, "{}", path="/v1/models"), 405, "method_not_allowed")


def test_it_answers_404_in_openai_shape_for_an_unknown_v1_path(live_gateway, owner):
    assert_openai_error(post(live_gateway, owner, "{}", path="/v1/embeddingz"), 404, "unknown_url")


def test_an_upstream_500_is_a_502_that_keeps_the_upstream_message(live_gateway, owner, upstream_block):
    upstream_block(owner.organization, "status500", block_id="acme-broken")
    error = assert_openai_error(post(live_gateway, owner, {"model": "acme-broken", "messages": HI}), 502)
    assert "injected failure from the fake upstream" in error["message"]
    client = openai.OpenAI(base_url=live_gateway.v1, api_key=owner.key, max_retries=0)
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="acme-broken", messages=HI, stream=True)
    assert caught.value.status_code == 502


def test_an_upstream_429_stays_a_429(live_gateway, owner, upstream_block):
    upstream_block(owner.organization, "status429", block_id="acme-busy")
    assert_openai_error(post(live_gateway, owner, {"model": "acme-busy", "messages": HI}), 429)


def test_a_hanging_upstream_is_a_504_after_the_blocks_timeout(live_gateway, owner, upstream_block):
    upstream_block(owner.organization, "hang", block_id="acme-hang", config={"timeout_s": 0.5})
    assert_openai_error(post(live_gateway, owner, {"model": "acme-hang", "messages": HI}), 504, "upstream_timeout")
    streamed = post(live_gateway, owner, {"model": "acme-hang", "messages": HI, "stream": True})
    assert_openai_error(streamed, 504, "upstream_timeout")


def test_an_unreachable_upstream_is_a_502(live_gateway, owner, upstream_block):
    from tests.factories import BlockFactory

    BlockFactory(organization=owner.organization, block_id="acme-gone", backend_type="openai",
                 backend_config={"base_url": "http://127.0.0.1:9/v1"})
    assert_openai_error(post(live_gateway, owner, {"model": "acme-gone", "messages": HI}), 502,
                        "upstream_unreachable")


def test_a_stream_cut_midway_ends_with_an_error_event(live_gateway, owner, upstream_block):
    upstream_block(owner.organization, "cut5", block_id="acme-cut")
    reply = post(live_gateway, owner, {"model": "acme-cut", "messages": HI, "stream": True})
    assert reply.status == 200
    events = [line[6:] for line in reply.body.decode().split("\n\n") if line.startswith("data: ")]
    assert len(events) == 6  # five upstream chunks, then the error
    assert b"[DONE]" not in reply.body
    error = json.loads(events[-1])["error"]
    assert error["code"] == "upstream_stream_cut" and error["type"] == "upstream_error"
    client = openai.OpenAI(base_url=live_gateway.v1, api_key=owner.key, max_retries=0)
    with pytest.raises(openai.APIError):
        list(client.chat.completions.create(model="acme-cut", messages=HI, stream=True))


def test_a_block_without_a_backend_is_not_listed_and_chatting_with_it_is_a_clear_400(live_gateway, owner):
    from tests.factories import BlockFactory

    BlockFactory(organization=owner.organization, block_id="acme-entry", backend_type="", backend_config={})
    client = openai.OpenAI(base_url=live_gateway.v1, api_key=owner.key, max_retries=0)
    assert "acme-entry" not in {m.id for m in client.models.list()}
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("acme-entry")
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="acme-entry", messages=[{"role": "user", "content": "x"}])
    assert caught.value.body["code"] == "model_not_runnable"
    assert "no inference backend" in caught.value.body["message"]
