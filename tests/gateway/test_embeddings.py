"""POST /v1/embeddings: the built-in embedding model, forwarding to OpenAI-compatible upstreams, and the
refusals (in-process over ASGI, plus the openai client against a live gateway)."""

from __future__ import annotations

import math

import openai
import orjson
import pytest
from asgiref.sync import sync_to_async
from channels.testing import HttpCommunicator
from django.conf import settings
from django.core.management import call_command

from registry.models import Block
from registry.services import api_key_create
from registry.tenancy.models import PolicyRule
from tests.factories import BlockFactory
from webapp.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)

EMBED = settings.SWITCHBOARD_EMBEDDING_BLOCK_ID


@pytest.fixture
def builtin(db):
    call_command("load_builtin_blocks")
    return EMBED


async def post(path: str, key: str, body: dict) -> tuple[int, dict, dict]:
    communicator = HttpCommunicator(application, "POST", path, body=orjson.dumps(body),
                                    headers=[(b"authorization", f"Bearer {key}".encode()),
                                             (b"content-type", b"application/json")])
    response = await communicator.get_response(timeout=30)
    headers = {k.decode(): v.decode() for k, v in response["headers"]}
    return response["status"], headers, orjson.loads(response["body"])


async def embed(key: str, **body) -> tuple[int, dict, dict]:
    return await post("/v1/embeddings", key, body)


async def test_the_builtin_model_embeds_a_string_and_a_list_as_openai_shapes_them(owner, builtin):
    status, headers, reply = await embed(owner.key, model=EMBED, input=["The cat sleeps.", "A kitten is napping on the sofa."])
    assert status == 200, reply
    assert reply["object"] == "list" and reply["model"] == EMBED
    assert [d["index"] for d in reply["data"]] == [0, 1] and {d["object"] for d in reply["data"]} == {"embedding"}
    vectors = [d["embedding"] for d in reply["data"]]
    assert all(len(v) == 384 for v in vectors)
    assert all(abs(math.sqrt(sum(x * x for x in v)) - 1) < 1e-3 for v in vectors)
    assert reply["usage"]["prompt_tokens"] == reply["usage"]["total_tokens"] > 4
    assert headers["x-request-id"]
    _, _, single = await embed(owner.key, model=EMBED, input="The cat sleeps.")
    # Batched and single runs pad differently; PyTorch's kernels then differ in the last float bits.
    assert single["data"][0]["embedding"] == pytest.approx(vectors[0], abs=1e-5)
    # A paraphrase lies closer than an unrelated sentence: the vectors carry meaning.
    _, _, other = await embed(owner.key, model=EMBED, input="Quarterly revenue rose by four percent.")
    cosine = lambda a, b: sum(x * y for x, y in zip(a, b, strict=True))  # noqa: E731
    assert cosine(vectors[0], vectors[1]) > cosine(vectors[0], other["data"][0]["embedding"])


async def test_input_type_is_accepted_and_the_symmetric_model_gives_one_vector_for_both_sides(owner, builtin):
    _, _, query = await embed(owner.key, model=EMBED, input="solar panels", input_type="query")
    _, _, passage = await embed(owner.key, model=EMBED, input="solar panels", input_type="passage")
    _, _, default = await embed(owner.key, model=EMBED, input="solar panels")
    assert query["data"][0]["embedding"] == passage["data"][0]["embedding"]  # all-MiniLM-L6-v2 has no prefixes
    assert default["data"][0]["embedding"] == query["data"][0]["embedding"]
    status, _, reply = await embed(owner.key, model=EMBED, input="solar panels", input_type="document")
    assert status == 400 and reply["error"]["param"] == "input_type"


def test_the_openai_client_gets_base64_vectors_equal_to_the_floats(live_gateway, member, builtin):
    client = openai.OpenAI(base_url=live_gateway.v1, api_key=member.key, max_retries=0, timeout=30)
    as_base64 = client.embeddings.create(model=EMBED, input=["hello world"])  # the client asks for base64
    as_floats = client.embeddings.create(model=EMBED, input=["hello world"], encoding_format="float")
    assert as_base64.model == EMBED and len(as_base64.data[0].embedding) == 384
    assert as_base64.data[0].embedding == pytest.approx(as_floats.data[0].embedding, abs=1e-6)
    assert as_base64.usage.prompt_tokens > 0


async def test_dimensions_other_than_the_models_are_refused_naming_the_param(owner, builtin):
    status, _, reply = await embed(owner.key, model=EMBED, input="hi", dimensions=256)
    assert status == 400 and reply["error"]["param"] == "dimensions"
    assert "384" in reply["error"]["message"]
    status, _, _ = await embed(owner.key, model=EMBED, input="hi", dimensions=384)
    assert status == 200


async def test_token_ids_are_refused_by_the_builtin_model_naming_the_input(owner, builtin):
    status, _, reply = await embed(owner.key, model=EMBED, input=[101, 2054, 102])
    assert (status, reply["error"]["param"], reply["error"]["code"]) == (400, "input", "unsupported_parameter")


@pytest.mark.parametrize(("body", "param"), [
    ({"input": []}, "input"),
    ({"input": ["ok", ""]}, "input[1]"),
    ({"input": [["a"]]}, "input"),
    ({}, "input"),
    ({"input": "x", "encoding_format": "int8"}, "encoding_format"),
    ({"input": "x", "input_type": "document"}, "input_type"),
    ({"input": "x", "dimensions": 0}, "dimensions"),
    ({"input": "x", "model": "auto"}, "model"),
])
async def test_bad_bodies_are_400s_naming_the_param(owner, builtin, body, param):
    status, _, reply = await embed(owner.key, **{"model": EMBED, **body})
    assert status == 400 and reply["error"]["param"] == param, reply


async def test_a_chat_model_refuses_embeddings_and_the_embedding_model_refuses_chat(owner, builtin):
    await sync_to_async(BlockFactory)(organization=owner.organization, block_id="acme-chat")
    status, _, reply = await embed(owner.key, model="acme-chat", input="hi")
    assert (status, reply["error"]["code"], reply["error"]["param"]) == (400, "unsupported_endpoint", "model")
    status, _, reply = await post("/v1/chat/completions", owner.key,
                                  {"model": EMBED, "messages": [{"role": "user", "content": "hi"}]})
    assert (status, reply["error"]["code"]) == (400, "unsupported_endpoint")


async def test_an_openai_block_forwards_to_its_upstream_and_names_itself(owner, upstream_block, fake_upstream):
    await sync_to_async(upstream_block)(owner.organization, block_id="acme-remote-embed",
                                        config={"model": "text-embedding-3-small"})
    status, headers, reply = await embed(owner.key, model="acme-remote-embed", input=["a b c", "d"],
                                         dimensions=8, encoding_format="base64", user="u1")
    assert status == 200, reply
    assert fake_upstream.stats.last_body == {"model": "text-embedding-3-small", "input": ["a b c", "d"],
                                             "dimensions": 8, "encoding_format": "base64", "user": "u1"}
    assert reply["model"] == "acme-remote-embed" and isinstance(reply["data"][0]["embedding"], str)
    assert reply["usage"] == {"prompt_tokens": 4, "total_tokens": 4}
    assert fake_upstream.stats.last_headers["x-request-id"] == headers["x-request-id"]


async def test_another_organization_cannot_reach_a_private_embedding_block_and_a_member_can(
        owner, member, outsider, upstream_block):
    await sync_to_async(upstream_block)(owner.organization, block_id="acme-private-embed")
    status, _, reply = await embed(outsider.key, model="acme-private-embed", input="hi")
    assert (status, reply["error"]["code"]) == (404, "model_not_found")
    status, _, _ = await embed(outsider.key, model="acme/acme-private-embed", input="hi")
    assert status == 404
    status, _, _ = await embed(member.key, model="acme-private-embed", input="hi")
    assert status == 200


async def test_an_embedding_block_under_approval_required_refuses_embeddings_rather_than_run_them_unheld(
        owner, member, upstream_block, fake_upstream):
    block = await sync_to_async(upstream_block)(owner.organization, "embed-held", block_id="acme-held-embed")
    await sync_to_async(PolicyRule.objects.create)(organization=owner.organization, block=block,
                                                   approval_required={"approvers": {"role": "owner"},
                                                                      "deadline_s": 60})
    status, _, reply = await embed(member.key, model="acme-held-embed", input="hi")
    assert (status, reply["error"]["code"]) == (403, "approval_required")
    assert "/v1/embeddings does not wait" in reply["error"]["message"]
    assert fake_upstream.hits["embed-held"] == 0


async def test_a_key_limited_to_other_models_gets_403(owner, upstream_block, builtin):
    await sync_to_async(upstream_block)(owner.organization, block_id="acme-allowed")
    _, key = await sync_to_async(api_key_create)(organization=owner.organization, name="limited",
                                                 created_by=owner.user, allowed_models=["acme-allowed"])
    status, _, reply = await embed(key, model=EMBED, input="hi")
    assert (status, reply["error"]["code"]) == (403, "model_not_allowed")


def test_the_builtin_embedding_block_is_public_and_loaded_with_the_chat_model(builtin):
    block = Block.objects.get(block_id=EMBED)
    assert (block.backend_type, block.visibility, block.enabled, block.kind) == ("embedding", Block.PUBLIC, True,
                                                                                 Block.LLM)


def test_a_tenant_embedding_block_takes_no_configuration(owner):
    refused = owner.client().post("/api/blocks", {"id": "acme-embed", "backend": {
        "type": "embedding", "config": {"model_path": "/tmp/other.bin"}}}, format="json")
    assert refused.status_code == 400 and "model_path" in refused.json()["message"]
    created = owner.client().post("/api/blocks", {"id": "acme-embed", "backend": {"type": "embedding"}},
                                  format="json")
    assert created.status_code == 201
