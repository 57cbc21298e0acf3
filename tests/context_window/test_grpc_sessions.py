"""The seed's gRPC `session_id` (AIOS and OrgLLM packets) names the same conversation as the context
window store: a chat request with a session_id sent to a gRPC block gets the stored history in its
packet and appends its turn, and the packet carries that session_id. On a block of another organization
the packet's id is one per (caller organization, session), so two organizations' sessions of the same
name never share an upstream's state."""

from __future__ import annotations

import asyncio
import json

import orjson
import pytest
from channels.testing import HttpCommunicator

from inference.backends.grpc_common import close_aio_channels
from registry.models import Block
from tests.factories import BlockFactory
from tests.support.fake_grpc import FakeGrpcServer
from webapp.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def grpc_server():
    server = FakeGrpcServer().start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
async def _close_channels():
    yield
    await close_aio_channels()


async def chat(key: str, body: dict) -> tuple[int, dict]:
    communicator = HttpCommunicator(application, "POST", "/v1/chat/completions", body=orjson.dumps(body),
                                    headers=[(b"authorization", f"Bearer {key}".encode()),
                                             (b"content-type", b"application/json")])
    response = await communicator.get_response(timeout=30)
    return response["status"], orjson.loads(response["body"])


def say(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


@pytest.mark.parametrize("backend_type", ["aios_grpc", "orgllm_grpc"])
async def test_a_grpc_packets_session_id_is_the_stored_session_with_its_history(owner, member, backend_type,
                                                                               grpc_server):
    config = {"target": grpc_server.target, **({"block_id": "aios-7"} if backend_type == "aios_grpc" else
                                              {"org_id": "acme", "model_id": "m"})}
    await asyncio.to_thread(BlockFactory, organization=owner.organization, block_id="stateful",
                            backend_type=backend_type, backend_config=config)
    status, first = await chat(member.key, {"model": "stateful", "session_id": "conv-1", "messages": say("hello")})
    assert status == 200 and first["choices"][0]["message"]["content"] == "HELLO"
    status, _ = await chat(member.key, {"model": "stateful", "session_id": "conv-1", "messages": say("again")})
    assert status == 200

    one, two = grpc_server.recorder.requests
    assert one.session_id == two.session_id == "conv-1"  # the seed's field names the stored session
    assert json.loads(two.data)["messages"] == [
        {"role": "user", "content": "hello"}, {"role": "assistant", "content": "HELLO"},
        {"role": "user", "content": "again"}]
    stored = (await asyncio.to_thread(member.client().get, "/api/sessions/conv-1")).json()["data"]["messages"]
    assert [(m["role"], m["content"]) for m in stored] == [
        ("user", "hello"), ("assistant", "HELLO"), ("user", "again"), ("assistant", "AGAIN")]


async def test_two_organizations_sessions_of_one_name_never_share_a_shared_grpc_blocks_state(
        owner, member, outsider, grpc_server):
    await asyncio.to_thread(BlockFactory, organization=owner.organization, block_id="shared-aios",
                            backend_type="aios_grpc", visibility=Block.PUBLIC,
                            backend_config={"target": grpc_server.target, "block_id": "aios-7"})
    assert (await chat(member.key, {"model": "shared-aios", "session_id": "s", "messages": say("a")}))[0] == 200
    assert (await chat(outsider.key, {"model": "acme/shared-aios", "session_id": "s", "messages": say("b")}))[0] == 200
    ours, theirs = grpc_server.recorder.requests
    assert ours.session_id == "s"  # the owner's own block sees its own session names
    assert theirs.session_id.startswith("sb-") and "s" != theirs.session_id and "globex" not in theirs.session_id
    assert json.loads(theirs.data)["messages"] == say("b")  # nothing of the owner's conversation
    assert (await asyncio.to_thread(outsider.client().get, "/api/sessions/s")).json()["data"]["messages"][0][
        "content"] == "b"
