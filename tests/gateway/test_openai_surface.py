"""The OpenAI surface, exact (issue 9 item 4): request ids, error pass-through, the added usage chunk,
and POST /v1/completions, against a live gateway and the fake upstream."""

from __future__ import annotations

import json

import openai
import pytest

from inference.backends.llamacpp import LlamaCppBackend
from inference.gateway.validation import estimate_prompt_tokens
from registry.models import Block
from tests.factories import BlockFactory
from tests.support.plain_http import request

pytestmark = pytest.mark.django_db(transaction=True)

HI = [{"role": "user", "content": "hi"}]


def post(gateway, path: str, party, body: dict):
    headers = {"Content-Type": "application/json"}
    if party is not None:
        headers["Authorization"] = f"Bearer {party.key}"
    return request("POST", f"{gateway.v1}{path}", json.dumps(body), headers)


def events(body: bytes) -> list[dict]:
    out = []
    for line in body.split(b"\n"):
        if line.startswith(b"data: ") and line != b"data: [DONE]":
            out.append(json.loads(line[6:]))
    return out


def python_block(organization) -> Block:
    return BlockFactory(organization=organization, block_id="acme-reverse", kind=Block.LLM, backend_type="python",
                        backend_config={"class": "inference.backends.examples.ReverseTextLLM"})


# x-request-id
def test_every_response_has_an_x_request_id_even_a_refusal(live_gateway, owner, outsider, upstream_block):
    upstream_block(owner.organization, block_id="acme-ids")
    ok = post(live_gateway, "/chat/completions", owner, {"model": "acme-ids", "messages": HI})
    missing_key = post(live_gateway, "/chat/completions", None, {"model": "acme-ids", "messages": HI})
    foreign = post(live_gateway, "/chat/completions", outsider, {"model": "acme-ids", "messages": HI})
    assert (ok.status, missing_key.status, foreign.status) == (200, 401, 404)
    ids = {ok.headers["x-request-id"], missing_key.headers["x-request-id"], foreign.headers["x-request-id"]}
    assert len(ids) == 3 and all(ids)


def test_the_gateway_sends_its_request_id_upstream_and_the_openai_client_sees_it(
        live_gateway, owner, upstream_block, fake_upstream):
    upstream_block(owner.organization, block_id="acme-sent-id")
    client = openai.OpenAI(base_url=live_gateway.v1, api_key=owner.key, max_retries=0, timeout=10)
    reply = client.chat.completions.create(model="acme-sent-id", messages=HI)
    assert reply._request_id and fake_upstream.stats.last_headers["x-request-id"] == reply._request_id


def test_the_upstreams_request_id_is_the_one_the_client_gets(live_gateway, owner, upstream_block, fake_upstream):
    upstream_block(owner.organization, "reqid", block_id="acme-upstream-id")
    plain = post(live_gateway, "/chat/completions", owner, {"model": "acme-upstream-id", "messages": HI})
    streamed = post(live_gateway, "/chat/completions", owner,
                    {"model": "acme-upstream-id", "messages": HI, "stream": True})
    assert plain.headers["x-request-id"].startswith("upstream-")
    assert streamed.headers["x-request-id"].startswith("upstream-")
    assert plain.headers["x-request-id"] != streamed.headers["x-request-id"]


# Upstream errors
def test_an_upstream_context_length_error_keeps_its_code_param_and_type(live_gateway, owner, upstream_block):
    upstream_block(owner.organization, "ctxlen-reqid", block_id="acme-long")
    client = openai.OpenAI(base_url=live_gateway.v1, api_key=owner.key, max_retries=0, timeout=10)
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="acme-long", messages=HI)
    assert caught.value.code == "context_length_exceeded"
    assert caught.value.param == "messages"
    assert caught.value.type == "invalid_request_error"
    assert "exceed context window" in caught.value.message
    assert caught.value.request_id.startswith("upstream-")


# The usage chunk the gateway adds
def test_the_added_usage_chunk_carries_the_streams_id_and_created(live_gateway, owner, upstream_block):
    upstream_block(owner.organization, "nousage-chunks3", block_id="acme-stream-id")
    reply = post(live_gateway, "/chat/completions", owner, {"model": "acme-stream-id", "messages": HI,
                                                            "stream": True, "stream_options": {"include_usage": True}})
    chunks = events(reply.body)
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 3
    assert {c["id"] for c in chunks} == {"chatcmpl-fake"}
    assert len({c["created"] for c in chunks}) == 1


def test_the_added_prompt_count_comes_from_the_blocks_tokenizer_when_it_has_one(live_gateway, owner, upstream_block):
    upstream_block(owner.organization, "nousage-chunks3", block_id="acme-counted",
                   config={"tokenizer": "builtin"})
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is the capital of France?"}]
    reply = post(live_gateway, "/chat/completions", owner, {"model": "acme-counted", "messages": messages,
                                                            "stream": True, "stream_options": {"include_usage": True}})
    assert events(reply.body)[-1]["usage"]["prompt_tokens"] == LlamaCppBackend().count_tokens(messages)
    assert "x-switchboard-usage" not in reply.headers


def test_without_a_tokenizer_the_added_prompt_count_includes_the_chat_templates_overhead(
        live_gateway, owner, upstream_block):
    upstream_block(owner.organization, "nousage-chunks3", block_id="acme-estimated")
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]
    reply = post(live_gateway, "/chat/completions", owner, {"model": "acme-estimated", "messages": messages,
                                                            "stream": True, "stream_options": {"include_usage": True}})
    prompt_tokens = events(reply.body)[-1]["usage"]["prompt_tokens"]
    assert prompt_tokens == estimate_prompt_tokens(len("Be brief.") + len("hi"), 2)
    assert prompt_tokens > (len("Be brief.") + len("hi")) // 4 + 2 * 5  # framing counted, not just characters


def test_a_backend_whose_usage_is_approximate_is_labelled_estimated(live_gateway, owner):
    python_block(owner.organization)
    reply = post(live_gateway, "/chat/completions", owner, {"model": "acme-reverse", "messages": HI})
    assert reply.status == 200 and reply.headers["x-switchboard-usage"] == "estimated"


def test_a_backend_that_reports_usage_is_not_labelled(live_gateway, owner, upstream_block):
    upstream_block(owner.organization, block_id="acme-reported")
    reply = post(live_gateway, "/chat/completions", owner, {"model": "acme-reported", "messages": HI})
    assert reply.json()["usage"]["prompt_tokens"] == 8 and "x-switchboard-usage" not in reply.headers


# POST /v1/completions
def test_completions_answer_400_unsupported_endpoint_for_a_backend_that_cannot_serve_them(live_gateway, owner):
    python_block(owner.organization)
    reply = post(live_gateway, "/completions", owner, {"model": "acme-reverse", "prompt": "hello"})
    assert reply.status == 400
    assert reply.json()["error"]["code"] == "unsupported_endpoint" and reply.json()["error"]["param"] == "model"
    assert reply.headers["x-request-id"]


def test_completions_refuse_another_organizations_key_like_a_missing_model(live_gateway, owner, outsider):
    python_block(owner.organization)
    reply = post(live_gateway, "/completions", outsider, {"model": "acme-reverse", "prompt": "hello"})
    assert reply.status == 404 and reply.json()["error"]["code"] == "model_not_found"


def test_completions_refuse_a_request_without_a_key(live_gateway, owner):
    python_block(owner.organization)
    reply = post(live_gateway, "/completions", None, {"model": "acme-reverse", "prompt": "hello"})
    assert reply.status == 401


def test_completions_refuse_a_body_without_a_prompt_naming_the_param(live_gateway, member):
    reply = post(live_gateway, "/completions", member, {"model": "anything"})
    assert reply.status == 400 and reply.json()["error"]["param"] == "prompt"


@pytest.mark.parametrize("prompt", [[-1], [[3, -2]], [], [True], [1.5], {"text": "hi"}])
def test_completions_refuse_a_prompt_that_is_neither_text_nor_token_ids(live_gateway, member, prompt):
    python_block(member.organization)
    reply = post(live_gateway, "/completions", member, {"model": "acme-reverse", "prompt": prompt})
    assert reply.status == 400
    assert (reply.json()["error"]["param"], reply.json()["error"]["code"]) == ("prompt", "invalid_type")


def test_completions_go_through_an_openai_block_for_a_member_streamed_and_not(live_gateway, member, upstream_block,
                                                                               fake_upstream):
    upstream_block(member.organization, block_id="acme-text")
    plain = post(live_gateway, "/completions", member, {"model": "acme-text", "prompt": "Once", "max_tokens": 4})
    assert plain.status == 200, plain.body
    assert plain.json()["object"] == "text_completion" and plain.json()["model"] == "acme-text"
    assert plain.json()["choices"][0]["text"].startswith("tok0") and fake_upstream.stats.last_body["prompt"] == "Once"
    streamed = post(live_gateway, "/completions", member, {"model": "acme-text", "prompt": "Once", "stream": True,
                                                           "stream_options": {"include_usage": True}})
    chunks = events(streamed.body)
    assert "".join(c["choices"][0]["text"] for c in chunks if c["choices"]).startswith("tok0 tok1")
    assert chunks[-1]["usage"]["completion_tokens"] == 16 and {c["model"] for c in chunks} == {"acme-text"}
