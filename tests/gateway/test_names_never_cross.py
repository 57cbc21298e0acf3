"""Issue 8, finding "traffic hijack by name": names never cross organizations.

A model reference resolves in the caller's own organization first (id, then name); another
organization's public or granted block answers only to its qualified id "<org-slug>/<block-id>";
the platform organization's public blocks answer to plain ids and names below the caller's own.
Every test that sends a prompt checks where it went: the fake upstream counts requests per first
path segment, so each organization's block gets a segment of its own.
"""

from __future__ import annotations

import itertools
import json
import time

import pytest
from asgiref.sync import sync_to_async
from django.test import override_settings

from inference.backends.base import BackendError
from inference.sdk import KnownLLMs, RegistryError, in_process
from registry.models import Block, BlockGrant, Organization
from registry.selectors import block_resolve
from registry.services import api_key_create
from registry.tenancy.access import BLOCK_CACHE_SECONDS
from registry.tenancy.models import PolicyRule
from registry.tenancy.rules import RULES_POLL_S
from tests.factories import BlockFactory
from tests.support.plain_http import request
from tests.support.websocket_client import connect, frames_until_done

pytestmark = pytest.mark.django_db(transaction=True)

MODEL = "SmolLM2-135M-Instruct"
PROMPT = "the acme board meets on friday; do not tell globex"
_segments = itertools.count()


@pytest.fixture
def segment():
    """A fresh fake-upstream path segment: requests are counted per segment for the whole session."""
    return lambda who: f"{who}{next(_segments)}"


def chat(gateway, party, model: str, **extra):
    body = {"model": model, "messages": [{"role": "user", "content": PROMPT}], **extra}
    return request("POST", f"{gateway.v1}/chat/completions", json.dumps(body),
                   {"Authorization": f"Bearer {party.key}", "Content-Type": "application/json"})


def received(fake_upstream, scenario: str) -> int:
    return fake_upstream.stats.by_scenario.get(scenario, 0)


@pytest.fixture
def hijack(outsider, upstream_block, segment):
    """Globex's bait: a block whose *name* is the model name acme uses, with a low-sorting id, and
    another whose *id* is an id acme uses."""
    scenario = segment("globexbait")
    by_name = upstream_block(outsider.organization, scenario, block_id="0-bait", name=MODEL)
    by_id = upstream_block(outsider.organization, scenario, block_id="acme-chat", name="Globex chat")
    return scenario, by_name, by_id


@pytest.fixture
def acme_chat(owner, upstream_block, segment):
    scenario = segment("acmeown")
    return scenario, upstream_block(owner.organization, scenario, block_id="acme-chat", name="Acme chat")


@pytest.fixture
def platform_chat(upstream_block, segment):
    """The operator's built-in model, as `make run` loads it: public, in the platform organization."""
    scenario = segment("platform")
    platform = Organization.objects.create(slug="local", name="Local")
    return scenario, upstream_block(platform, scenario, block_id="smollm2-135m-instruct", name=MODEL,
                                    visibility=Block.PUBLIC)


def test_a_public_block_named_like_your_model_never_receives_your_prompt(
        live_gateway, fake_upstream, owner, outsider, hijack, acme_chat, platform_chat):
    bait_scenario, by_name, by_id = hijack
    own_scenario, _ = acme_chat
    platform_scenario, _ = platform_chat
    # Globex makes its bait public through the API, as the hijacker did.
    for block in (by_name, by_id):
        made_public = outsider.client().patch(f"/api/blocks/{block.block_id}", {"visibility": "public"},
                                              format="json")
        assert made_public.status_code == 200, made_public.json()
    for model, served in ((MODEL, "smollm2-135m-instruct"), ("acme-chat", "acme-chat")):
        reply = chat(live_gateway, owner, model)
        assert reply.status == 200, reply.body
        assert reply.json()["model"] == served
    assert received(fake_upstream, bait_scenario) == 0
    assert (received(fake_upstream, own_scenario), received(fake_upstream, platform_scenario)) == (1, 1)


def test_a_block_granted_to_you_under_your_model_name_never_receives_your_prompt(
        live_gateway, fake_upstream, owner, outsider, hijack, acme_chat, platform_chat):
    bait_scenario, by_name, by_id = hijack
    own_scenario, _ = acme_chat
    platform_scenario, _ = platform_chat
    # Grants need no consent from the grantee: globex shares its bait with acme.
    for block in (by_name, by_id):
        granted = outsider.client().post(f"/api/blocks/{block.block_id}/grants", {"organization": "acme"},
                                         format="json")
        assert granted.status_code == 201
    for model, served in ((MODEL, "smollm2-135m-instruct"), ("acme-chat", "acme-chat")):
        reply = chat(live_gateway, owner, model, stream=True)
        assert reply.status == 200, reply.body
        assert f'"model":"{served}"'.encode() in reply.body
    assert received(fake_upstream, bait_scenario) == 0
    assert (received(fake_upstream, own_scenario), received(fake_upstream, platform_scenario)) == (1, 1)
    # Acme's own name for a model ranks above the platform's.
    Block.objects.filter(organization=owner.organization).update(name=MODEL)
    time.sleep(BLOCK_CACHE_SECONDS + 0.2)
    assert chat(live_gateway, owner, MODEL).json()["model"] == "acme-chat"
    assert received(fake_upstream, bait_scenario) == 0


def test_a_foreign_block_under_a_name_you_do_not_have_is_a_404_and_gets_nothing(
        live_gateway, fake_upstream, owner, member, hijack):
    bait_scenario, by_name, by_id = hijack
    Block.objects.filter(pk=by_name.pk).update(visibility=Block.PUBLIC)
    BlockGrant.objects.create(block=by_id, organization=owner.organization)
    for party in (owner, member):
        for model in (MODEL, "0-bait", "acme-chat"):
            reply = chat(live_gateway, party, model)
            assert reply.status == 404, reply.body
            assert reply.json()["error"]["code"] == "model_not_found"
    assert received(fake_upstream, bait_scenario) == 0


def test_a_qualified_id_reaches_a_public_or_granted_foreign_block_and_nothing_else(
        live_gateway, fake_upstream, owner, outsider, upstream_block, segment):
    scenario = segment("globexshared")
    public = upstream_block(outsider.organization, scenario, block_id="summarizer", visibility=Block.PUBLIC)
    granted = upstream_block(outsider.organization, scenario, block_id="granted")
    private = upstream_block(outsider.organization, scenario, block_id="private")
    BlockGrant.objects.create(block=granted, organization=owner.organization)
    for block in (public, granted):
        reply = chat(live_gateway, owner, block.qualified_id)
        assert reply.status == 200, reply.body
        assert reply.json()["model"] == block.qualified_id
    assert chat(live_gateway, owner, private.qualified_id).status == 404
    assert chat(live_gateway, owner, "globex/nothing").status == 404
    assert received(fake_upstream, scenario) == 2
    # The owner of the block names it by its plain id (or qualified, its own).
    assert chat(live_gateway, outsider, "private").json()["model"] == "private"
    assert chat(live_gateway, outsider, "globex/private").json()["model"] == "globex/private"


def test_platform_blocks_answer_unqualified_below_your_own_names(
        live_gateway, fake_upstream, owner, outsider, upstream_block, segment):
    platform = Organization.objects.create(slug="local", name="Local")
    platform_scenario, own_scenario = segment("platform"), segment("acmeplat")
    upstream_block(platform, platform_scenario, block_id="house-model", name="House", visibility=Block.PUBLIC)
    upstream_block(platform, platform_scenario, block_id="house-private")
    # Acme's own name shadows the platform's id for acme only.
    upstream_block(owner.organization, own_scenario, block_id="acme-house", name="house-model")
    for party in (owner, outsider):
        assert chat(live_gateway, party, "House").json()["model"] == "house-model"
        assert chat(live_gateway, party, "house-private").status == 404
    assert chat(live_gateway, outsider, "house-model").json()["model"] == "house-model"
    assert chat(live_gateway, owner, "house-model").json()["model"] == "acme-house"
    # Named in full, the platform block stays reachable, and the reply names it so.
    assert chat(live_gateway, owner, "local/house-model").json()["model"] == "local/house-model"
    assert (received(fake_upstream, own_scenario), received(fake_upstream, platform_scenario)) == (1, 4)


def test_only_the_operator_writes_the_platform_organizations_blocks(owner, outsider, upstream_block):
    platform = Organization.objects.create(slug="local", name="Local")
    upstream_block(platform, "ok", block_id="house-model", visibility=Block.PUBLIC)
    for party in (owner, outsider):
        client = party.client()
        assert client.get("/api/blocks/house-model").status_code == 200
        for method in ("patch", "delete"):
            assert getattr(client, method)("/api/blocks/house-model", {"name": "mine"},
                                           format="json").status_code == 403
        # A tenant's "house-model" is its own block, in its own namespace.
        created = client.post("/api/blocks", {"id": "house-model"}, format="json")
        assert created.status_code == 201
        assert created.json()["data"]["organization"] == party.organization.slug
    assert Block.objects.get(organization=platform).name == "house-model"


def test_block_ids_are_unique_per_organization_and_a_409_speaks_only_of_your_own(owner, member, outsider):
    for party in (owner, outsider):
        created = party.client().post("/api/blocks", {"id": "summarizer", "name": "S"}, format="json")
        assert created.status_code == 201
        assert created.json()["data"]["qualifiedId"] == f"{party.organization.slug}/summarizer"
    for party in (owner, outsider):
        again = party.client().post("/api/blocks", {"id": "summarizer"}, format="json")
        assert again.status_code == 409
        assert again.json() == {"success": False, "message": "you already have a block with id 'summarizer'"}
    assert Block.objects.filter(block_id="summarizer").count() == 2
    # Each organization's plain id is its own block, for every role.
    for party in (owner, member, outsider):
        data = party.client().get("/api/blocks/summarizer").json()["data"]
        assert data["organization"] == party.organization.slug
    assert owner.client().get("/api/blocks/globex/summarizer").status_code == 404  # private


def test_models_lists_foreign_blocks_by_their_qualified_id(
        live_gateway, owner, member, outsider, upstream_block):
    platform = Organization.objects.create(slug="local", name="Local")
    upstream_block(platform, "ok", block_id="house-model", visibility=Block.PUBLIC)
    upstream_block(platform, "ok", block_id="shadowed", visibility=Block.PUBLIC)
    upstream_block(owner.organization, "ok", block_id="summarizer", name="shadowed")
    upstream_block(outsider.organization, "ok", block_id="summarizer", visibility=Block.PUBLIC)
    upstream_block(outsider.organization, "ok", block_id="hidden")
    headers = {"Authorization": f"Bearer {owner.key}"}
    listed = [m["id"] for m in request("GET", f"{live_gateway.v1}/models", headers=headers).json()["data"]]
    assert listed == ["globex/summarizer", "house-model", "local/shadowed", "summarizer"]
    one = request("GET", f"{live_gateway.v1}/models/globex/summarizer", headers=headers).json()
    assert (one["id"], one["owned_by"]) == ("globex/summarizer", "globex")
    member_headers = {"Authorization": f"Bearer {member.key}"}
    assert request("GET", f"{live_gateway.v1}/models/globex/hidden", headers=member_headers).status == 404
    listed = [m["id"] for m in request("GET", f"{live_gateway.v1}/models",
                                       headers={"Authorization": f"Bearer {outsider.key}"}).json()["data"]]
    assert listed == ["hidden", "house-model", "shadowed", "summarizer"]


def test_fallbacks_never_reach_a_foreign_block_by_a_plain_id(
        live_gateway, fake_upstream, owner, outsider, upstream_block, segment):
    bait, spare_scenario = segment("globexspare"), segment("acmespare")
    primary = upstream_block(owner.organization, "status503", block_id="acme-primary")
    upstream_block(outsider.organization, bait, block_id="0-spare", name="spare", visibility=Block.PUBLIC)
    upstream_block(outsider.organization, bait, block_id="spare", visibility=Block.PUBLIC)
    # A request naming the foreign block's plain id or name as its fallback: 404, nothing sent.
    for fallback in ("spare", "0-spare"):
        refused = chat(live_gateway, owner, "acme-primary", switchboard={"fallbacks": [fallback]})
        assert refused.status == 404, refused.body
    # A stored rule whose fallback is acme's own "spare": the failed primary falls back to it.
    upstream_block(owner.organization, spare_scenario, block_id="spare")
    PolicyRule.objects.create(organization=owner.organization, block=primary, fallbacks=["spare"])
    time.sleep(RULES_POLL_S + 0.3)  # the gateway process sees a rule change within RULES_POLL_S
    served = chat(live_gateway, owner, "acme-primary")
    assert served.status == 200 and served.json()["model"] == "spare"
    assert (received(fake_upstream, bait), received(fake_upstream, spare_scenario)) == (0, 1)
    # Named in full, a public foreign fallback is allowed.
    qualified = chat(live_gateway, owner, "acme-primary", switchboard={"fallbacks": ["globex/spare"]})
    assert qualified.status == 200 and qualified.json()["model"] == "globex/spare"


def test_a_policy_naming_a_foreign_block_by_its_plain_id_is_refused(owner, outsider, upstream_block):
    upstream_block(owner.organization, "ok", block_id="acme-primary")
    upstream_block(outsider.organization, "ok", block_id="globex-public", visibility=Block.PUBLIC)
    client = owner.client()
    refused = client.post("/api/policies", {"block": "acme-primary", "fallbacks": ["globex-public"]}, format="json")
    assert refused.status_code == 404
    assert refused.json()["message"] == "fallbacks: unknown block 'globex-public'"
    created = client.post("/api/policies", {"block": "acme-primary", "fallbacks": ["globex/globex-public"]},
                          format="json")
    assert created.status_code == 201 and created.json()["data"]["fallbacks"] == ["globex/globex-public"]
    assert client.post("/api/policies", {"block": "globex/globex-public"}, format="json").status_code == 201
    assert client.get("/api/policies").json()["data"][1]["block"] == "globex/globex-public"


def test_a_keys_allowed_models_match_a_foreign_block_only_by_its_qualified_id(
        live_gateway, owner, outsider, upstream_block):
    upstream_block(owner.organization, "ok", block_id="summarizer")
    upstream_block(outsider.organization, "ok", block_id="summarizer", visibility=Block.PUBLIC)
    _, plain = api_key_create(organization=owner.organization, name="plain", created_by=owner.user,
                              allowed_models=["summarizer"])
    _, qualified = api_key_create(organization=owner.organization, name="qualified", created_by=owner.user,
                                  allowed_models=["globex/summarizer"])
    plain_party = type(owner)(user=owner.user, organization=owner.organization, key=plain)
    qualified_party = type(owner)(user=owner.user, organization=owner.organization, key=qualified)
    assert chat(live_gateway, plain_party, "summarizer").json()["model"] == "summarizer"
    assert chat(live_gateway, plain_party, "acme/summarizer").status == 200
    assert chat(live_gateway, plain_party, "globex/summarizer").status == 403
    assert chat(live_gateway, qualified_party, "summarizer").status == 403
    assert chat(live_gateway, qualified_party, "globex/summarizer").json()["model"] == "globex/summarizer"
    # A key naming another organization's block by its plain id is refused when it is minted.
    upstream_block(outsider.organization, "ok", block_id="globex-only", visibility=Block.PUBLIC)
    keys = owner.client()
    refused = keys.post("/api/keys", {"name": "k", "allowed_models": ["globex-only"]}, format="json")
    assert refused.status_code == 404
    minted = keys.post("/api/keys", {"name": "k", "allowed_models": ["globex/globex-only"]}, format="json")
    assert minted.status_code == 201 and minted.json()["data"]["allowedModels"] == ["globex/globex-only"]


async def test_the_websocket_chat_never_sends_your_prompt_to_a_hijacking_name(
        live_gateway, fake_upstream, owner, hijack, platform_chat):
    bait_scenario, by_name, _ = hijack
    platform_scenario, _ = platform_chat
    await Block.objects.filter(pk=by_name.pk).aupdate(visibility=Block.PUBLIC)
    async with connect(live_gateway.ws, additional_headers={"Authorization": f"Bearer {owner.key}"}) as ws:
        await ws.send(json.dumps({"id": "c1", "model": MODEL, "messages": [{"role": "user", "content": PROMPT}]}))
        frames = await frames_until_done(ws, "c1")
        await ws.send(json.dumps({"id": "c2", "model": "0-bait", "messages": [{"role": "user", "content": PROMPT}]}))
        refused = await frames_until_done(ws, "c2")
    assert frames[-1]["type"] == "done" and frames[-1]["model"] == "smollm2-135m-instruct"
    assert refused[-1]["type"] == "error" and refused[-1]["error"]["code"] == "model_not_found"
    assert received(fake_upstream, bait_scenario) == 0
    assert received(fake_upstream, platform_scenario) == 1


def test_the_sdk_adds_a_foreign_block_by_its_qualified_id(live_gateway, fake_upstream, owner, outsider,
                                                          upstream_block, segment):
    scenario = segment("globexsdk")
    upstream_block(outsider.organization, scenario, block_id="summarizer", visibility=Block.PUBLIC)
    llms = KnownLLMs(base_url=live_gateway.url, api_key=owner.key)
    with pytest.raises(RegistryError) as plain:
        llms.add_llm("s", block_id="summarizer")
    assert plain.value.status == 404
    block = llms.add_llm("s", block_id="globex/summarizer")
    assert (block.id, block.reference) == ("summarizer", "globex/summarizer")
    assert llms.run_ai_inference("s", {"text": PROMPT}).startswith("tok0")
    assert received(fake_upstream, scenario) == 1
    # In-process, for the acme organization: the same rule.
    local = KnownLLMs(organization="acme")
    with pytest.raises(RegistryError):
        local.add_llm("s", block_id="summarizer")
    assert local.add_llm("s", block_id="globex/summarizer").reference == "globex/summarizer"


def test_the_org_registry_maps_a_name_to_a_foreign_block_only_by_its_qualified_id(owner, member, outsider,
                                                                                  upstream_block):
    upstream_block(outsider.organization, "ok", block_id="summarizer", visibility=Block.PUBLIC)
    client = owner.client()
    plain = client.post("/api/orgs/acme/models", {"name": "sum", "block_id": "summarizer"}, format="json")
    assert plain.status_code == 404
    made = client.post("/api/orgs/acme/models", {"name": "sum", "block_id": "globex/summarizer"}, format="json")
    assert made.status_code == 201
    assert member.client().get("/api/orgs/acme/models/sum").json()["data"]["blockId"] == "globex/summarizer"
    assert outsider.client().get("/api/orgs/acme/models/sum").status_code == 404


def test_estimates_and_metrics_take_qualified_ids(owner, outsider, upstream_block):
    upstream_block(outsider.organization, "ok", block_id="summarizer", visibility=Block.PUBLIC)
    client = owner.client()
    body = {"search_query": {"input_size": 10}, "block_id": "summarizer"}
    assert client.post("/discovery/estimate", body, format="json").status_code == 404
    estimated = client.post("/discovery/estimate", {**body, "block_id": "globex/summarizer"}, format="json")
    assert estimated.status_code == 200 and estimated.json()["data"]["blockId"] == "globex/summarizer"
    assert client.get("/api/blocks/summarizer/metrics").status_code == 404
    assert client.get("/api/blocks/globex/summarizer/metrics").status_code == 200
    assert outsider.client().get("/api/blocks/summarizer/metrics").status_code == 200


def test_an_in_process_run_wants_a_qualified_id_when_an_id_is_not_unique(org, other_org):
    reverse = {"backend_type": "python", "backend_config": {"class": "inference.backends.examples.ReverseTextLLM"}}
    BlockFactory(organization=org, block_id="rev", **reverse)
    assert in_process.run_ai_inference(block_id="rev", input_data={"text": "abc"}) == "cba"
    BlockFactory(organization=other_org, block_id="rev", **reverse)
    with pytest.raises(BackendError, match="several organizations"):
        in_process.run_ai_inference(block_id="rev", input_data={"text": "abc"})
    assert in_process.run_ai_inference(block_id="globex/rev", input_data={"text": "abc"}) == "cba"


@override_settings(SWITCHBOARD_PLATFORM_ORG="house")
def test_the_resolver_ranks_own_id_own_name_qualified_then_platform(org, other_org):
    house = Organization.objects.create(slug="house", name="House")
    BlockFactory(organization=house, block_id="x", visibility=Block.PUBLIC)
    assert block_resolve(organization=org, reference="x").organization == house
    BlockFactory(organization=other_org, block_id="0", name="x", visibility=Block.PUBLIC)
    assert block_resolve(organization=org, reference="x").organization == house
    BlockFactory(organization=org, block_id="y", name="x")
    assert block_resolve(organization=org, reference="x").block_id == "y"
    assert block_resolve(organization=org, reference="x", names=False).organization == house
    BlockFactory(organization=org, block_id="x")
    assert block_resolve(organization=org, reference="x").organization == org
    assert block_resolve(organization=org, reference="globex/0").organization == other_org
    assert block_resolve(organization=org, reference="house/x").organization == house
    assert block_resolve(organization=org, reference="globex/") is None


async def test_the_gateway_cache_keeps_one_answer_per_organization(owner, outsider, upstream_block):
    from registry.tenancy.access import resolve_block

    mine = await sync_to_async(upstream_block)(owner.organization, "ok", block_id="same")
    theirs = await sync_to_async(upstream_block)(outsider.organization, "ok", block_id="same",
                                                 visibility=Block.PUBLIC)
    assert (await resolve_block(owner.organization, "same")).pk == mine.pk
    assert (await resolve_block(outsider.organization, "same")).pk == theirs.pk
