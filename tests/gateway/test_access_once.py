"""Access is checked once per request, in registry.tenancy.access, and reads the same on every path.

The transports (/v1/chat/completions, /v1/completions, /v1/models/<id>, the WebSocket chat) run
in-process here (channels' communicators on webapp.asgi), so the SQL they cause can be counted on
the ORM threads they reach the database from.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import orjson
import pytest
from channels.testing import HttpCommunicator, WebsocketCommunicator
from django.db.backends.signals import connection_created

from registry.asyncdb import close_thread_connections
from registry.models import Block
from registry.services import api_key_create
from tests.factories import BlockFactory
from webapp.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)

MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.fixture
def blocks(org) -> None:
    BlockFactory(organization=org, block_id="acme-llm", visibility=Block.PRIVATE)
    BlockFactory(organization=org, block_id="acme-other", visibility=Block.PRIVATE)


@pytest.fixture
def narrow_key(org) -> str:
    """A key of acme's that may run acme-other only."""
    return api_key_create(organization=org, name="narrow", allowed_models=["acme-other"])[1]


async def http(method: str, path: str, key: str, body: dict | None = None) -> tuple[int, dict]:
    communicator = HttpCommunicator(application, method, path, body=orjson.dumps(body) if body else b"",
                                    headers=[(b"authorization", f"Bearer {key}".encode()),
                                             (b"content-type", b"application/json")])
    response = await communicator.get_response(timeout=10)
    return response["status"], orjson.loads(response["body"])


async def websocket_error(key: str, model: str) -> tuple[int, dict]:
    socket = WebsocketCommunicator(application, "/ws/chat/", headers=[
        (b"authorization", f"Bearer {key}".encode()), (b"origin", b"http://testserver")])
    connected, _ = await socket.connect()
    assert connected
    try:
        await socket.send_to(text_data=json.dumps({"id": "c1", "model": model, "messages": MESSAGES}))
        frame = json.loads(await socket.receive_from(timeout=10))
    finally:
        await socket.disconnect()
    assert frame["type"] == "error" and frame["id"] == "c1", frame
    return frame["status"], {"error": frame["error"]}


async def every_path(key: str, model: str) -> dict[str, tuple[int, dict]]:
    """What each transport answers `key` for `model`: (status, the OpenAI error body)."""
    return {
        "chat": await http("POST", "/v1/chat/completions", key, {"model": model, "messages": MESSAGES}),
        "chat stream": await http("POST", "/v1/chat/completions", key,
                                  {"model": model, "messages": MESSAGES, "stream": True}),
        "completions": await http("POST", "/v1/completions", key, {"model": model, "prompt": "hi"}),
        "models": await http("GET", f"/v1/models/{model}", key),
        "websocket": await websocket_error(key, model),
    }


def not_found(model: str) -> tuple[int, dict]:
    return 404, {"error": {"message": f"The model '{model}' does not exist or you do not have access to it.",
                           "type": "invalid_request_error", "param": "model", "code": "model_not_found"}}


async def test_another_orgs_private_block_gets_a_missing_models_404_word_for_word_on_every_path(outsider, blocks):
    for model in ("acme-llm", "acme/acme-llm"):
        assert await every_path(outsider.key, model) == dict.fromkeys(
            ("chat", "chat stream", "completions", "models", "websocket"), not_found(model))
    assert await every_path(outsider.key, "acme/no-such-model") == dict.fromkeys(
        ("chat", "chat stream", "completions", "models", "websocket"), not_found("acme/no-such-model"))


async def test_a_model_outside_the_keys_allowed_models_gets_the_same_403_on_every_path(narrow_key, blocks):
    refused = (403, {"error": {"message": "This API key is not allowed to use the model 'acme-llm'.",
                               "type": "permission_error", "param": "model", "code": "model_not_allowed"}})
    assert await every_path(narrow_key, "acme-llm") == dict.fromkeys(
        ("chat", "chat stream", "completions", "models", "websocket"), refused)


@pytest.mark.parametrize("who", ["owner", "member"])
async def test_owners_and_members_pass_the_same_check(owner, member, who, blocks):
    key = {"owner": owner, "member": member}[who].key
    status, reply = await http("POST", "/v1/chat/completions", key, {"model": "acme-llm", "messages": MESSAGES})
    assert (status, reply["choices"][0]["message"]["content"]) == (200, "ih")
    status, reply = await http("GET", "/v1/models/acme-llm", key)
    assert (status, reply["id"]) == (200, "acme-llm")


@pytest.fixture
def sql_on_orm_threads() -> Iterator[list[str]]:
    """Every SQL statement the ORM threads (registry.asyncdb) run meanwhile, counted by Django's own
    execute_wrapper hook on each connection they open (they are closed first, so each opens one)."""
    statements: list[str] = []
    wrapped = []

    def record(execute, sql, params, many, context):
        statements.append(sql)
        return execute(sql, params, many, context)

    def wrap(sender, connection, **kwargs):
        connection.execute_wrappers.append(record)
        wrapped.append(connection)

    close_thread_connections()
    connection_created.connect(wrap)
    yield statements
    connection_created.disconnect(wrap)
    for connection in wrapped:
        connection.execute_wrappers.remove(record)


def reads_blocks(sql: str) -> bool:
    return '"registry_block"' in sql or '"registry_blockgrant"' in sql


@pytest.fixture
def down_and_backup(org, upstream_block) -> None:
    upstream_block(org, "status503", block_id="acme-down")
    upstream_block(org, "ok", block_id="acme-backup")


async def test_each_name_a_request_uses_is_resolved_and_checked_once(owner, down_and_backup, sql_on_orm_threads):
    body = {"model": "acme-down", "messages": MESSAGES, "switchboard": {"fallbacks": ["acme-backup"]}}

    status, reply = await http("POST", "/v1/chat/completions", owner.key, body)
    assert (status, reply["model"]) == (200, "acme-backup")  # the primary failed, the fallback served
    # One query per name (the primary and its fallback): the call loop and admission check nothing again,
    # and the organization's rules no longer load its grants to check visibility a second time.
    assert len([sql for sql in sql_on_orm_threads if reads_blocks(sql)]) == 2, sql_on_orm_threads

    sql_on_orm_threads.clear()
    assert (await http("POST", "/v1/chat/completions", owner.key, body))[0] == 200
    assert sql_on_orm_threads == []  # warm: key, names and rules all cached
