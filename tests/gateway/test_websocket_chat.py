"""WebSocket chat at /ws/chat/: deltas, done, errors, several conversations, cancel, three ways to authenticate."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from tests.support.websocket_client import connect, frames_until_done

pytestmark = pytest.mark.django_db(transaction=True)

HI = [{"role": "user", "content": "hi"}]


@pytest.fixture
def blocks(owner, upstream_block):
    upstream_block(owner.organization, "chunks4", block_id="acme-ws")
    upstream_block(owner.organization, "delay50-chunks40", block_id="acme-ws-slow")


async def test_it_streams_deltas_then_done_with_usage(live_gateway, owner, blocks):
    async with connect(live_gateway.ws, additional_headers={"Authorization": f"Bearer {owner.key}"}) as ws:
        await ws.send(json.dumps({"id": "c1", "model": "acme-ws", "messages": HI, "max_tokens": 8}))
        frames = await frames_until_done(ws, "c1")
    assert [f["type"] for f in frames] == ["delta"] * 4 + ["done"]
    assert "".join(f["content"] for f in frames[:-1]) == "tok0 tok1 tok2 tok3 "
    assert frames[-1]["usage"] == {"prompt_tokens": 8, "completion_tokens": 4, "total_tokens": 12}
    assert frames[-1]["model"] == "acme-ws" and frames[-1]["finish_reason"] == "stop"


async def test_it_runs_conversations_side_by_side_and_cancels_one(live_gateway, owner, blocks, fake_upstream):
    aborted = fake_upstream.stats.streams_aborted
    async with connect(f"{live_gateway.ws}?api_key={owner.key}") as ws:
        await ws.send(json.dumps({"id": "slow", "model": "acme-ws-slow", "messages": HI}))
        await ws.send(json.dumps({"id": 2, "model": "acme-ws", "messages": HI}))
        seen: dict = {"slow": [], 2: []}
        async with asyncio.timeout(5):
            while len(seen["slow"]) < 3 or not seen[2] or seen[2][-1]["type"] != "done":
                frame = json.loads(await ws.recv())
                seen[frame["id"]].append(frame)
        await ws.send(json.dumps({"type": "cancel", "id": "slow"}))
        rest = await frames_until_done(ws, "slow")
    assert rest[-1]["type"] == "cancelled"
    assert len(seen["slow"]) + len(rest) < 40  # It stopped long before the upstream's 40 chunks.
    assert [f["type"] for f in seen[2]] == ["delta"] * 4 + ["done"]
    await asyncio.sleep(0.1)
    assert fake_upstream.stats.streams_aborted == aborted + 1


async def test_an_id_can_be_reused_as_soon_as_its_done_frame_arrives(live_gateway, owner, blocks):
    async with connect(live_gateway.ws, additional_headers={"Authorization": f"Bearer {owner.key}"}) as ws:
        for _ in range(3):
            await ws.send(json.dumps({"id": "again", "model": "acme-ws", "messages": HI}))
            assert (await frames_until_done(ws, "again"))[-1]["type"] == "done"


async def test_it_authenticates_with_a_first_auth_message(live_gateway, owner, blocks):
    async with connect(live_gateway.ws) as ws:
        await ws.send(json.dumps({"id": "early", "model": "acme-ws", "messages": HI}))
        refused = json.loads(await ws.recv())
        assert refused["type"] == "error" and refused["status"] == 401 and refused["id"] == "early"
        await ws.send(json.dumps({"type": "auth", "api_key": owner.key}))
        assert json.loads(await ws.recv()) == {"type": "authenticated", "organization": "acme"}
        await ws.send(json.dumps({"id": "c", "model": "acme-ws", "messages": HI}))
        assert (await frames_until_done(ws, "c"))[-1]["type"] == "done"


async def test_a_wrong_key_is_refused_and_the_socket_closed(live_gateway):
    async with connect(f"{live_gateway.ws}?api_key=sb-wrong") as ws:
        frame = json.loads(await ws.recv())
        assert frame["type"] == "error" and frame["error"]["code"] == "invalid_api_key"
        await ws.wait_closed()
        assert ws.close_code == 4401


async def test_bad_frames_get_error_frames_in_openai_shape(live_gateway, owner, blocks):
    async with connect(live_gateway.ws, additional_headers={"Authorization": f"Bearer {owner.key}"}) as ws:
        cases = [
            ("not json", None, None),
            ('["a list"]', None, None),
            (json.dumps({"model": "acme-ws", "messages": HI}), None, "id"),
            (json.dumps({"id": "a", "model": "acme-ws"}), "a", "messages"),
            (json.dumps({"id": "b", "model": "acme-ws", "messages": HI, "temperature": 9}), "b", "temperature"),
            (json.dumps({"id": "c", "type": "dance"}), "c", "type"),
            (json.dumps({"id": "d", "type": "cancel"}), "d", "id"),
        ]
        for text, conversation, param in cases:
            await ws.send(text)
            frame = json.loads(await ws.recv())
            assert frame["type"] == "error" and frame["id"] == conversation and frame["status"] == 400, frame
            assert set(frame["error"]) == {"message", "type", "param", "code"}
            assert frame["error"]["param"] == param
        await ws.send(json.dumps({"id": "e", "model": "missing", "messages": HI}))
        frame = json.loads(await ws.recv())
        assert frame["status"] == 404 and frame["error"]["code"] == "model_not_found"


async def test_an_outsider_cannot_chat_with_acmes_private_block(live_gateway, outsider, blocks):
    async with connect(live_gateway.ws, additional_headers={"Authorization": f"Bearer {outsider.key}"}) as ws:
        await ws.send(json.dumps({"id": 1, "model": "acme-ws", "messages": HI}))
        frame = json.loads(await ws.recv())
    assert frame["type"] == "error" and frame["status"] == 404
    assert frame["error"]["code"] == "model_not_found"


async def test_closing_the_socket_closes_its_running_upstream_requests(live_gateway, owner, blocks, fake_upstream):
    aborted = fake_upstream.stats.streams_aborted
    async with connect(live_gateway.ws, additional_headers={"Authorization": f"Bearer {owner.key}"}) as ws:
        await ws.send(json.dumps({"id": "a", "model": "acme-ws-slow", "messages": HI}))
        await ws.send(json.dumps({"id": "b", "model": "acme-ws-slow", "messages": HI}))
        seen = set()
        async with asyncio.timeout(5):
            while seen != {"a", "b"}:
                seen.add(json.loads(await ws.recv())["id"])
    closed = time.monotonic()
    for _ in range(400):  # The fake upstream counts on its own thread; poll up to 2 s.
        if fake_upstream.stats.streams_aborted >= aborted + 2:
            break
        await asyncio.sleep(0.005)
    assert fake_upstream.stats.streams_aborted == aborted + 2
    assert max(fake_upstream.stats.aborted_at[-2:]) - closed < 0.1


async def test_it_accepts_the_dashboards_logged_in_session(live_gateway, owner, blocks):
    from asgiref.sync import sync_to_async
    from django.test import Client

    browser = Client()
    await sync_to_async(browser.force_login)(owner.user)
    cookie = f"sessionid={browser.cookies['sessionid'].value}"
    async with connect(live_gateway.ws, additional_headers={"Cookie": cookie}) as ws:
        await ws.send(json.dumps({"id": "s1", "model": "acme-ws", "messages": HI}))
        frames = await frames_until_done(ws, "s1")
    assert frames[-1]["type"] == "done"


async def test_it_refuses_a_session_of_a_user_without_organization(live_gateway, blocks):
    from asgiref.sync import sync_to_async
    from django.contrib.auth import get_user_model
    from django.test import Client

    loner = await get_user_model().objects.acreate(username="loner")
    browser = Client()
    await sync_to_async(browser.force_login)(loner)
    cookie = f"sessionid={browser.cookies['sessionid'].value}"
    async with connect(live_gateway.ws, additional_headers={"Cookie": cookie}) as ws:
        await ws.send(json.dumps({"id": "s2", "model": "acme-ws", "messages": HI}))
        frames = await frames_until_done(ws, "s2")
    assert frames[-1]["type"] == "error"
    assert frames[-1]["error"]["code"] == "missing_api_key"
