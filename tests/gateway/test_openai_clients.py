"""The official `openai` package, sync and async, streaming and not, against a live gateway."""

from __future__ import annotations

import openai
import pytest

from registry.models import Block

pytestmark = pytest.mark.django_db(transaction=True)


def client(gateway, party) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.v1, api_key=party.key, max_retries=0, timeout=10)


def test_it_answers_a_chat_completion_with_usage_and_the_block_id_as_model(live_gateway, owner, upstream_block):
    block = upstream_block(owner.organization, block_id="acme-fast")
    reply = client(live_gateway, owner).chat.completions.create(
        model="acme-fast", messages=[{"role": "user", "content": "Say hello."}], max_tokens=16)
    assert reply.model == block.block_id
    assert reply.choices[0].message.content.startswith("tok0 tok1")
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage.prompt_tokens == 8 and reply.usage.completion_tokens == 16
    assert reply.usage.total_tokens == 24


def test_it_resolves_a_model_by_its_name(live_gateway, owner, upstream_block):
    upstream_block(owner.organization, block_id="acme-by-name", name="Friendly Name")
    reply = client(live_gateway, owner).chat.completions.create(
        model="Friendly Name", messages=[{"role": "user", "content": "hi"}])
    assert reply.model == "acme-by-name"


def test_it_passes_sampling_parameters_tools_and_content_parts_to_the_upstream(
        live_gateway, owner, upstream_block, fake_upstream):
    upstream_block(owner.organization, block_id="acme-params")
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    client(live_gateway, owner).chat.completions.create(
        model="acme-params",
        messages=[{"role": "system", "content": "Be brief."},
                  {"role": "user", "content": [{"type": "text", "text": "Capital of "},
                                               {"type": "text", "text": "France?"}]},
                  {"role": "assistant", "content": "The capital is"}],
        temperature=0.3, top_p=0.9, max_completion_tokens=12, stop=["\n"], seed=7, n=2,
        tools=tools, tool_choice="auto", response_format={"type": "json_object"}, presence_penalty=0.5,
    )
    sent = fake_upstream.stats.last_body
    assert sent["model"] == "acme-params"
    assert sent["messages"][1]["content"][1] == {"type": "text", "text": "France?"}
    assert sent["messages"][-1] == {"role": "assistant", "content": "The capital is"}
    assert (sent["temperature"], sent["top_p"], sent["max_tokens"], sent["stop"], sent["seed"], sent["n"]) == \
        (0.3, 0.9, 12, ["\n"], 7, 2)
    assert sent["tools"] == tools and sent["tool_choice"] == "auto"
    assert sent["response_format"] == {"type": "json_object"}
    assert sent["presence_penalty"] == 0.5


def test_it_streams_openai_chunks_and_hides_usage_unless_asked(live_gateway, owner, upstream_block):
    upstream_block(owner.organization, block_id="acme-stream")
    chunks = list(client(live_gateway, owner).chat.completions.create(
        model="acme-stream", messages=[{"role": "user", "content": "hi"}], stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "".join(f"tok{i} " for i in range(16))
    assert all(c.model == "acme-stream" for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.usage is None for c in chunks)


def test_it_streams_a_usage_chunk_when_the_client_asks(live_gateway, owner, upstream_block):
    upstream_block(owner.organization, block_id="acme-usage")
    chunks = list(client(live_gateway, owner).chat.completions.create(
        model="acme-usage", messages=[{"role": "user", "content": "hi"}], stream=True,
        stream_options={"include_usage": True}))
    assert chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens == 16


def test_it_reports_metered_usage_when_the_upstream_streams_none(live_gateway, owner, upstream_block):
    upstream_block(owner.organization, "nousage-chunks5", block_id="acme-nousage")
    chunks = list(client(live_gateway, owner).chat.completions.create(
        model="acme-nousage", messages=[{"role": "user", "content": "hi"}], stream=True,
        stream_options={"include_usage": True}))
    assert chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens == 5 and chunks[-1].usage.prompt_tokens > 0


def test_it_rewrites_the_model_of_chunks_from_an_upstream_with_another_model_name(
        live_gateway, owner, upstream_block):
    upstream_block(owner.organization, block_id="acme-renamed", config={"model": "upstream-name"})
    chunks = list(client(live_gateway, owner).chat.completions.create(
        model="acme-renamed", messages=[{"role": "user", "content": "hi"}], stream=True))
    assert {c.model for c in chunks} == {"acme-renamed"}


@pytest.fixture
def async_block(owner, upstream_block) -> Block:
    return upstream_block(owner.organization, block_id="acme-async")


async def test_the_async_client_streams_and_completes(live_gateway, owner, async_block):
    async with openai.AsyncOpenAI(base_url=live_gateway.v1, api_key=owner.key, max_retries=0) as aclient:
        reply = await aclient.chat.completions.create(model="acme-async",
                                                      messages=[{"role": "user", "content": "hi"}])
        assert reply.usage.total_tokens == 24
        stream = await aclient.chat.completions.create(model="acme-async", stream=True,
                                                       messages=[{"role": "user", "content": "hi"}])
        pieces = [c.choices[0].delta.content async for c in stream if c.choices and c.choices[0].delta.content]
        assert len(pieces) == 16


def test_models_lists_own_public_and_granted_blocks_but_not_foreign_private_ones(
        live_gateway, owner, outsider, upstream_block):
    from registry.models import BlockGrant

    upstream_block(owner.organization, block_id="acme-private")
    upstream_block(owner.organization, block_id="acme-public", visibility=Block.PUBLIC)
    upstream_block(owner.organization, block_id="acme-disabled", enabled=False)
    shared = upstream_block(owner.organization, block_id="acme-shared")
    BlockGrant.objects.create(block=shared, organization=outsider.organization)
    upstream_block(outsider.organization, block_id="globex-own")

    own = {m.id for m in client(live_gateway, owner).models.list()}
    theirs = {m.id for m in client(live_gateway, outsider).models.list()}
    assert own == {"acme-private", "acme-public", "acme-shared"}
    assert theirs == {"acme/acme-public", "acme/acme-shared", "globex-own"}  # foreign ones by qualified id
    assert client(live_gateway, owner).models.retrieve("acme-public").owned_by == "acme"


def test_an_outsider_cannot_use_acmes_private_block(live_gateway, outsider, owner, upstream_block):
    upstream_block(owner.organization, block_id="acme-secret")
    with pytest.raises(openai.NotFoundError) as caught:
        client(live_gateway, outsider).chat.completions.create(
            model="acme-secret", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.body["code"] == "model_not_found"
    with pytest.raises(openai.NotFoundError):
        client(live_gateway, outsider).models.retrieve("acme-secret")


def test_a_key_limited_to_other_models_gets_403(live_gateway, owner, upstream_block):
    from registry.services import api_key_create

    upstream_block(owner.organization, block_id="acme-a")
    upstream_block(owner.organization, block_id="acme-b")
    _, raw = api_key_create(organization=owner.organization, name="only-a", allowed_models=["acme-a"])
    limited = openai.OpenAI(base_url=live_gateway.v1, api_key=raw, max_retries=0)
    assert limited.chat.completions.create(model="acme-a", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.PermissionDeniedError) as caught:
        limited.chat.completions.create(model="acme-b", messages=[{"role": "user", "content": "x"}])
    assert caught.value.body["code"] == "model_not_allowed"
    assert {m.id for m in limited.models.list()} == {"acme-a"}


def test_a_wrong_key_gets_401_in_openai_shape(live_gateway):
    bad = openai.OpenAI(base_url=live_gateway.v1, api_key="sb-not-a-real-key", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as caught:
        bad.models.list()
    assert caught.value.body["code"] == "invalid_api_key"
