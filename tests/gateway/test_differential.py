"""The same requests straight to a real OpenAI-compatible server (llama_cpp.server on the built-in GGUF)
and through the gateway (an `openai` block on that server), compared field by field.

The server's prompt cache is reset before each side of a pair: a warm prefix changes logprobs. Only
what a proxy must change may differ: `model` (the block's id), and `id`/`created` of non-streamed
replies and streams (each call is a new generation, with an id of its own).
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from registry.builtin import smollm2_gguf_path
from tests.factories import BlockFactory
from tests.support.live_server import start_llama_reference
from tests.support.plain_http import request

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

SYSTEM = {"role": "system", "content": "You answer in one short sentence."}
CHAT = {"messages": [SYSTEM, {"role": "user", "content": "What is the capital of France?"}],
        "max_tokens": 12, "temperature": 0, "seed": 7}


@pytest.fixture(scope="module")
def reference() -> Iterator[str]:
    url, server = start_llama_reference(smollm2_gguf_path())
    yield url
    server.stop(grace_s=10)


@pytest.fixture
def pair(reference, live_gateway, owner):
    """send(path, body) -> (direct reply, gateway reply), each side on a cold prompt cache."""
    BlockFactory(organization=owner.organization, block_id="acme-llama", kind="llm", backend_type="openai",
                 backend_config={"base_url": f"{reference}/v1", "tokenizer": "builtin"})

    def send(path: str, body: dict):
        replies = []
        for base, headers in ((f"{reference}/v1", {}), (live_gateway.v1, {"Authorization": f"Bearer {owner.key}"})):
            assert request("POST", f"{reference}/reset-cache").status == 200
            replies.append(request("POST", f"{base}{path}", json.dumps({"model": "acme-llama", **body}),
                                   {"Content-Type": "application/json", **headers}, timeout=30))
        return replies

    return send


def events(body: bytes) -> list[dict]:
    return [json.loads(line[6:]) for line in body.split(b"\n")
            if line.startswith(b"data: ") and line != b"data: [DONE]"]


def without(d: dict, *keys: str) -> dict:
    return {k: v for k, v in d.items() if k not in keys}


def test_a_chat_completion_with_logprobs_matches_the_server_field_by_field(pair):
    direct, gateway = pair("/chat/completions", {**CHAT, "logprobs": True, "top_logprobs": 2})
    assert direct.status == gateway.status == 200
    d, g = direct.json(), gateway.json()
    assert g["model"] == "acme-llama"
    assert without(g, "id", "created", "model") == without(d, "id", "created", "model")
    assert g["choices"][0]["logprobs"]["content"]  # logprobs really compared, not two empty lists


def test_a_streamed_chat_matches_the_server_chunk_by_chunk_and_adds_usage_with_the_streams_id(pair):
    direct_plain, _ = pair("/chat/completions", CHAT)
    direct, gateway = pair("/chat/completions", {**CHAT, "stream": True, "stream_options": {"include_usage": True}})
    d, g = events(direct.body), events(gateway.body)
    # llama_cpp.server streams no usage chunk; the gateway adds the one the client asked for.
    assert all("usage" not in chunk for chunk in d)
    *g_chunks, usage = g
    assert [without(c, "id", "created", "model") for c in g_chunks] == [without(c, "id", "created", "model") for c in d]
    # Each side is its own generation (its own id); within the gateway's stream the added chunk has the stream's.
    assert len({c["id"] for c in g}) == 1 and len({c["created"] for c in g}) == 1
    assert usage["choices"] == []
    # The prompt counted by the block's tokenizer, exactly as the server counts it.
    assert usage["usage"]["prompt_tokens"] == direct_plain.json()["usage"]["prompt_tokens"]
    assert usage["usage"]["completion_tokens"] == direct_plain.json()["usage"]["completion_tokens"]


def test_a_context_length_error_matches_the_server(pair):
    long = {**CHAT, "messages": [SYSTEM, {"role": "user", "content": "word " * 3000}]}
    direct, gateway = pair("/chat/completions", long)
    assert direct.status == gateway.status == 400
    d, g = direct.json()["error"], gateway.json()["error"]
    assert (g["code"], g["param"], g["type"]) == (d["code"], d["param"], d["type"]) \
        == ("context_length_exceeded", "messages", "invalid_request_error")
    assert d["message"] in g["message"]


def test_the_gateway_answers_with_the_request_id_the_server_logged(pair):
    _, gateway = pair("/chat/completions", CHAT)
    # llama_cpp.server echoes the X-Request-Id it received: the gateway's own, sent upstream.
    assert gateway.headers["x-request-id"]
    assert gateway.headers["x-request-id"].count("-") == 4  # UUID-shaped, which that server insists on


def test_a_text_completion_matches_the_server_streamed_and_not(pair):
    body = {"prompt": "The capital of France is", "max_tokens": 8, "temperature": 0, "seed": 7}
    direct, gateway = pair("/completions", body)
    assert direct.status == gateway.status == 200
    assert without(gateway.json(), "id", "created", "model") == without(direct.json(), "id", "created", "model")
    direct, gateway = pair("/completions", {**body, "stream": True})
    assert [without(c, "id", "created", "model") for c in events(gateway.body)] \
        == [without(c, "id", "created", "model") for c in events(direct.body)]


def test_a_member_completes_text_on_the_built_in_model(live_gateway, member, db):
    from django.core.management import call_command

    call_command("load_builtin_blocks")
    reply = request("POST", f"{live_gateway.v1}/completions",
                    json.dumps({"model": "smollm2-135m-instruct", "prompt": "The capital of France is",
                                "max_tokens": 6, "temperature": 0}),
                    {"Content-Type": "application/json", "Authorization": f"Bearer {member.key}"}, timeout=60)
    assert reply.status == 200, reply.body
    body = reply.json()
    assert body["object"] == "text_completion" and body["choices"][0]["text"]
    assert body["usage"]["prompt_tokens"] > 0 and body["usage"]["completion_tokens"] <= 6
