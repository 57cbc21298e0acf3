"""Issue 9, finding "KnownLLMOptimizers.run_ai_inference against a server always answers 404": optimizer
blocks run through /v1/chat/completions like LLM blocks (their backend runs them), under the same
naming rule, visibility and key restrictions; /v1/models lists LLMs unless ?kind=optimizer asks.
An LLM wins a name only from an optimizer of the same rank: the caller's own names come first, whatever their kind.

All against the real gateway (uvicorn subprocess on the test database); the blocks' backend is the
in-process ReverseTextLLM, so the answer shows which block ran.
"""

from __future__ import annotations

import json

import pytest

from inference.gateway.errors import OpenAIError
from inference.gateway.pipeline import prepare
from inference.sdk import KnownLLMOptimizers, RegistryError
from registry.models import Block, Organization
from registry.principal import Principal
from registry.services import api_key_create
from tests.factories import BlockFactory
from tests.support.plain_http import request

pytestmark = pytest.mark.django_db(transaction=True)


def chat(gateway, key: str, model: str, text: str = "optimize me", **extra):
    body = {"model": model, "messages": [{"role": "user", "content": text}], **extra}
    return request("POST", f"{gateway.v1}/chat/completions", json.dumps(body),
                   {"Authorization": f"Bearer {key}", "Content-Type": "application/json"})


def models(gateway, key: str, query: str = ""):
    return request("GET", f"{gateway.v1}/models{query}", headers={"Authorization": f"Bearer {key}"})


def listed(gateway, key: str, query: str = "") -> list[str]:
    reply = models(gateway, key, query)
    assert reply.status == 200, reply.body
    return [m["id"] for m in reply.json()["data"]]


@pytest.fixture
def optimizer(org) -> Block:
    return BlockFactory(organization=org, block_id="prompt-opt", name="Prompt optimizer", kind=Block.OPTIMIZER)


def test_an_optimizer_block_answers_on_chat_completions_like_an_llm_block(live_gateway, owner, optimizer):
    reply = chat(live_gateway, owner.key, "prompt-opt")
    assert reply.status == 200, reply.body
    body = reply.json()
    assert body["model"] == "prompt-opt"
    assert body["choices"][0]["message"]["content"] == "em ezimitpo"
    assert body["usage"]["total_tokens"] > 0
    # By its name too, and streamed.
    streamed = chat(live_gateway, owner.key, "Prompt optimizer", stream=True)
    assert streamed.status == 200
    assert b"ezimitpo" in streamed.body and streamed.body.rstrip().endswith(b"data: [DONE]")


def test_a_member_runs_and_lists_the_organizations_optimizers(live_gateway, member, optimizer):
    assert chat(live_gateway, member.key, "prompt-opt", "abc").json()["choices"][0]["message"]["content"] == "cba"
    assert listed(live_gateway, member.key, "?kind=optimizer") == ["prompt-opt"]


def test_another_organization_can_neither_run_nor_list_a_private_optimizer(live_gateway, outsider, optimizer):
    for model in ("prompt-opt", "Prompt optimizer", "acme/prompt-opt"):
        reply = chat(live_gateway, outsider.key, model)
        assert reply.status == 404, model
        assert reply.json()["error"]["code"] == "model_not_found"
    assert models(live_gateway, outsider.key, "/acme/prompt-opt").status == 404
    assert listed(live_gateway, outsider.key, "?kind=optimizer") == []


def test_another_organization_runs_a_public_optimizer_by_its_qualified_id_only(live_gateway, outsider, org):
    BlockFactory(organization=org, block_id="shared-opt", kind=Block.OPTIMIZER, visibility=Block.PUBLIC)
    assert chat(live_gateway, outsider.key, "shared-opt").status == 404
    reply = chat(live_gateway, outsider.key, "acme/shared-opt", "xy")
    assert reply.status == 200 and reply.json()["model"] == "acme/shared-opt"
    assert listed(live_gateway, outsider.key, "?kind=optimizer") == ["acme/shared-opt"]


def test_a_key_restricted_to_other_models_cannot_run_the_optimizer(live_gateway, owner, optimizer):
    BlockFactory(organization=owner.organization, block_id="acme-llm")
    _, restricted = api_key_create(organization=owner.organization, name="llm-only", created_by=owner.user,
                                   allowed_models=["acme-llm"])
    reply = chat(live_gateway, restricted, "prompt-opt")
    assert reply.status == 403 and reply.json()["error"]["code"] == "model_not_allowed"
    assert listed(live_gateway, restricted, "?kind=optimizer") == []
    assert chat(live_gateway, restricted, "acme-llm").status == 200


def test_models_lists_llms_unless_asked_for_optimizers(live_gateway, owner, optimizer):
    BlockFactory(organization=owner.organization, block_id="acme-llm")
    BlockFactory(organization=owner.organization, block_id="registry-only-opt", kind=Block.OPTIMIZER, backend_type="")
    assert listed(live_gateway, owner.key) == ["acme-llm"]
    assert listed(live_gateway, owner.key, "?kind=llm") == ["acme-llm"]
    # Like an LLM with no backend, an optimizer with none is not listed: it cannot answer.
    assert listed(live_gateway, owner.key, "?kind=optimizer") == ["prompt-opt"]
    retrieved = models(live_gateway, owner.key, "/prompt-opt")
    assert retrieved.status == 200 and retrieved.json()["id"] == "prompt-opt"


@pytest.mark.parametrize("query", ["?kind=agent", "?kind=optimizer&kind=llm", "?kind="])
def test_an_unknown_models_kind_is_a_400_naming_the_parameter(live_gateway, owner, query):
    reply = models(live_gateway, owner.key, query)
    assert reply.status == 400
    assert reply.json()["error"]["param"] == "kind"
    assert "'llm' or 'optimizer'" in reply.json()["error"]["message"]


def test_an_own_optimizer_keeps_its_name_against_a_platform_llm_of_the_same_id(
        live_gateway, fake_upstream, owner, upstream_block):
    platform = Organization.objects.create(slug="local", name="Local")
    scenario = "chunks11"  # This test's own segment: the fake upstream counts requests by it.
    upstream_block(platform, scenario, block_id="smollm2-135m-instruct", visibility=Block.PUBLIC)
    # The caller's own optimizer under the platform LLM's id: own names rank above the platform's,
    # whatever the kind (issue 8: the platform's blocks stay reachable "below each organization's own names").
    BlockFactory(organization=owner.organization, block_id="smollm2-135m-instruct", kind=Block.OPTIMIZER)
    before = fake_upstream.stats.by_scenario.get(scenario, 0)
    mine = chat(live_gateway, owner.key, "smollm2-135m-instruct", "abc")
    assert mine.status == 200 and mine.json()["choices"][0]["message"]["content"] == "cba"
    assert fake_upstream.stats.by_scenario.get(scenario, 0) == before
    assert listed(live_gateway, owner.key, "?kind=optimizer") == ["smollm2-135m-instruct"]
    # The platform LLM is still reached, by its qualified id.
    theirs = chat(live_gateway, owner.key, "local/smollm2-135m-instruct", "abc")
    assert theirs.status == 200 and theirs.json()["choices"][0]["message"]["content"] != "cba"
    assert fake_upstream.stats.by_scenario[scenario] == before + 1


def test_a_foreign_llm_never_takes_a_name_the_caller_gave_its_own_optimizer(
        live_gateway, fake_upstream, owner, upstream_block):
    slugged = Organization.objects.create(slug="meta-llama", name="Meta Llama")
    scenario = "chunks12"
    upstream_block(slugged, scenario, block_id="Llama-3", visibility=Block.PUBLIC)
    BlockFactory(organization=owner.organization, block_id="llama-opt", name="meta-llama/Llama-3",
                 kind=Block.OPTIMIZER)
    before = fake_upstream.stats.by_scenario.get(scenario, 0)
    reply = chat(live_gateway, owner.key, "meta-llama/Llama-3", "abc")
    assert reply.status == 200 and reply.json()["choices"][0]["message"]["content"] == "cba"
    assert reply.json()["model"] == "llama-opt"
    assert fake_upstream.stats.by_scenario.get(scenario, 0) == before  # the prompt never left


@pytest.fixture
def down_llm_and_optimizer(org, upstream_block) -> Block:
    # Made here, not in the async test: the ORM is synchronous.
    BlockFactory(organization=org, block_id="acme-opt", kind=Block.OPTIMIZER)
    return upstream_block(org, "status503", block_id="acme-down")


async def test_an_optimizer_never_stands_in_as_a_fallback_for_an_llm(org, down_llm_and_optimizer):
    body = {"model": "acme-down", "messages": [{"role": "user", "content": "hi"}],
            "switchboard": {"fallbacks": ["acme-opt"]}}
    call = await prepare(Principal(organization=org), body)
    assert [block.block_id for block in call.admission.fallbacks] == ["acme-opt"]  # admitted, then never run
    with pytest.raises(OpenAIError) as caught:
        await call.complete()
    assert caught.value.status == 502
    assert call.block.block_id == "acme-down"


@pytest.mark.parametrize("who", ["owner", "member"])
def test_known_llm_optimizers_run_ai_inference_answers_from_a_server(live_gateway, request, who, optimizer):
    """The seed's remote call: it posted to /v1/chat/completions and got a 404 for every optimizer."""
    party = request.getfixturevalue(who)
    optimizers = KnownLLMOptimizers(base_url=live_gateway.url, api_key=party.key)
    optimizers.add_optimizer("opt", "prompt-opt")
    assert optimizers.run_ai_inference("opt", {"text": "hello"}) == "olleh"


def test_known_llm_optimizers_cannot_run_another_organizations_private_optimizer(live_gateway, outsider, optimizer):
    optimizers = KnownLLMOptimizers(base_url=live_gateway.url, api_key=outsider.key)
    with pytest.raises(RegistryError) as hidden:
        optimizers.add_optimizer("opt", "acme/prompt-opt")
    assert hidden.value.status == 404
    # Named without the registry lookup, the gateway refuses it the same way.
    optimizers.add_custom_llm("stolen", {"id": "acme/prompt-opt", "kind": "optimizer"})
    with pytest.raises(RegistryError) as refused:
        optimizers.run_ai_inference("stolen", {"text": "x"})
    assert refused.value.status == 404
