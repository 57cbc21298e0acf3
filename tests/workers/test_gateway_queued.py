"""A queued block through the gateway's front doors: /v1/chat/completions (SSE with resumable
event ids, and a plain JSON answer) and the WebSocket chat, all relayed from a real worker."""

from __future__ import annotations

import asyncio
import json

import orjson
import pytest
from channels.testing import HttpCommunicator, WebsocketCommunicator

from tests.support.live_server import start_fake_engine
from tests.support.queued_requests import expected, queued_block
from tests.support.sse import sse_events, text_of
from webapp.asgi import application

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture
def engine():
    engine = start_fake_engine(token_delay_ms=5, tokens=24)
    yield engine
    engine.stop()


async def post_chat(key: str, body: dict) -> dict:
    communicator = HttpCommunicator(application, "POST", "/v1/chat/completions", body=orjson.dumps(body),
                                    headers=[(b"authorization", f"Bearer {key}".encode()),
                                             (b"content-type", b"application/json")])
    return await communicator.get_response(timeout=30)


async def test_a_streamed_answer_carries_event_ids_a_client_can_resume_from(owner, cpu_worker, engine):
    block = await asyncio.to_thread(queued_block, engine.url, owner.organization)
    response = await post_chat(owner.key, {"model": block.block_id, "stream": True, "max_tokens": 24,
                                           "messages": [{"role": "user", "content": "hi"}]})
    assert response["status"] == 200
    events = sse_events(response["body"])
    assert events[-1] == (None, "[DONE]")
    assert text_of(events) == expected(0, 24)
    ids = [event_id for event_id, _ in events[:-1]]
    request_id = ids[0].split(":")[0]
    assert all(event_id.startswith(request_id + ":") for event_id in ids)
    assert events[-2][1]["choices"][0]["finish_reason"] == "length"


async def test_a_plain_answer_from_a_queued_block_has_content_and_usage(owner, cpu_worker, engine):
    block = await asyncio.to_thread(queued_block, engine.url, owner.organization)
    response = await post_chat(owner.key, {"model": block.block_id, "max_tokens": 24,
                                           "messages": [{"role": "user", "content": "hi"}]})
    assert response["status"] == 200
    answer = orjson.loads(response["body"])
    assert answer["choices"][0]["message"]["content"] == expected(0, 24)
    assert answer["usage"]["completion_tokens"] == 24


async def test_the_websocket_chat_relays_a_queued_block(owner, cpu_worker, engine):
    block = await asyncio.to_thread(queued_block, engine.url, owner.organization)
    socket = WebsocketCommunicator(application, "/ws/chat/", headers=[
        (b"authorization", f"Bearer {owner.key}".encode()), (b"origin", b"http://testserver")])
    connected, _ = await socket.connect()
    assert connected
    try:
        await socket.send_to(text_data=json.dumps({"id": "q1", "model": block.block_id, "max_tokens": 24,
                                                   "messages": [{"role": "user", "content": "hi"}]}))
        frames = []
        while not frames or frames[-1]["type"] not in ("done", "error"):
            frames.append(json.loads(await socket.receive_from(timeout=30)))
    finally:
        await socket.disconnect()
    assert frames[-1]["type"] == "done", frames[-1]
    assert "".join(f["content"] for f in frames if f["type"] == "delta") == expected(0, 24)
    assert frames[-1]["usage"]["completion_tokens"] == 24


async def test_an_outsider_cannot_reach_a_queued_block(outsider, owner, cpu_worker, engine):
    block = await asyncio.to_thread(queued_block, engine.url, owner.organization)
    response = await post_chat(outsider.key, {"model": block.block_id, "stream": True,
                                              "messages": [{"role": "user", "content": "hi"}]})
    assert response["status"] == 404
    assert orjson.loads(response["body"])["error"]["code"] == "model_not_found"
    assert engine.stats()["requests"] == 0


async def test_the_builtin_model_answers_from_a_cpu_worker(owner, cpu_worker):
    from django.conf import settings
    from django.core.management import call_command

    from registry.models import Block

    def queue_builtin() -> str:
        call_command("load_builtin_blocks")
        block = Block.objects.get(block_id=settings.SWITCHBOARD_BUILTIN_BLOCK_ID)
        block.backend_config = {**block.backend_config, "dispatch": "queued", "queue": "inference.cpu"}
        block.save()
        return block.block_id

    block_id = await asyncio.to_thread(queue_builtin)
    response = await post_chat(owner.key, {"model": block_id, "stream": True, "max_tokens": 24, "seed": 1,
                                           "messages": [{"role": "user", "content": "What is the capital of France?"}]})
    assert response["status"] == 200, response["body"][:500]
    events = sse_events(response["body"])
    assert events[-1] == (None, "[DONE]")
    # It went through the queue: every chunk carries a resumable stream event id.
    assert all(event_id and ":" in event_id for event_id, _ in events[:-1])
    assert len(text_of(events).split()) >= 3


async def test_a_retry_policy_on_the_upstreams_own_status_retries_a_queued_block(owner, cpu_worker):
    from registry.tenancy.models import PolicyRule

    engine = start_fake_engine(fail_mode="http500")
    try:
        block = await asyncio.to_thread(queued_block, engine.url, owner.organization)
        await PolicyRule.objects.acreate(organization=owner.organization, block=block, retries=1, backoff_s=0,
                                         retry_on=[500])
        response = await post_chat(owner.key, {"model": block.block_id, "max_tokens": 4,
                                               "messages": [{"role": "user", "content": "hi"}]})
        assert response["status"] == 502
        assert "engine exploded" in orjson.loads(response["body"])["error"]["message"]
        assert engine.stats()["requests"] == 2  # the first attempt and its retry, each a queued task
    finally:
        engine.stop()
