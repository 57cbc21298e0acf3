"""The live feed of a run's events: SSE (resumable with Last-Event-ID) and the WebSocket, through the
real ASGI application, for the owner, a member, another organization and a revoked key."""

from __future__ import annotations

import asyncio
import json

import pytest

from inference.workflows.models import RunEvent
from registry.models import ApiKey
from registry.tenancy.services import api_key_revoke
from tests.workflows.conftest import publish, start, wait_run
from tests.workflows.live_client import EventStream, run_socket, socket_frames

pytestmark = pytest.mark.django_db(transaction=True)

REVIEWED = {"name": "reviewed", "version": "1", "nodes": [
    {"id": "draft", "type": "block", "block": "reverse", "prompt": "olleh"},
    {"id": "check", "type": "approval", "after": ["draft"], "approvers": {"role": "member"}},
    {"id": "send", "type": "block", "block": "reverse", "after": ["check"], "prompt": "{{ nodes.check.output }}"}]}


def started_run(owner, reverse_block) -> int:
    reverse_block(owner.organization)
    return start(owner, publish(owner, REVIEWED))


def approve(party, run_id: int) -> None:
    approval = party.client().get("/api/approvals?state=pending").json()["data"]
    (pending,) = [a for a in approval if a["run"] == run_id]
    response = party.client().post(f"/api/approvals/{pending['id']}/decision", {"decision": "approve"}, format="json")
    assert response.status_code == 200, response.json()


async def test_sse_streams_each_step_live_from_start_to_finish(owner, member, reverse_block):
    run_id = await asyncio.to_thread(started_run, owner, reverse_block)
    stream = EventStream(run_id, member.key)
    assert await stream.open() == 200
    assert stream.headers["content-type"].startswith("text/event-stream")
    first = await stream.events(until="node.waiting")
    await asyncio.to_thread(approve, owner, run_id)
    rest = await stream.events(until="end")
    await stream.close()

    got = [(e["event"], e["data"].get("node")) for e in first + rest]
    assert got == [("run.started", None), ("node.started", "draft"), ("node.succeeded", "draft"),
                   ("node.started", "check"), ("node.waiting", "check"), ("node.succeeded", "check"),
                   ("node.started", "send"), ("node.succeeded", "send"), ("run.finished", None), ("end", None)]
    assert [e["id"] for e in first + rest[:-1]] == list(range(1, 10))  # numbered 1, 2, 3... with no gap
    waiting = first[-1]["data"]
    assert waiting["review"] == "hello" and waiting["approval"]
    assert rest[-2]["data"]["state"] == "succeeded" and rest[-2]["data"]["output"] == "olleh"


async def test_sse_resumes_after_the_last_event_id_and_ends_on_a_finished_run(owner, reverse_block):
    run_id = await asyncio.to_thread(started_run, owner, reverse_block)
    stream = EventStream(run_id, owner.key)
    await stream.open()
    await stream.events(until="node.waiting")
    await stream.close()
    await asyncio.to_thread(approve, owner, run_id)
    await asyncio.to_thread(wait_run, run_id)

    resumed = EventStream(run_id, owner.key, last_event_id=5)
    assert await resumed.open() == 200
    events = await resumed.events(until="end")
    assert [e["id"] for e in events[:-1]] == [6, 7, 8, 9]
    assert events[-2]["event"] == "run.finished"
    by_query = EventStream(run_id, owner.key, query="after=8")
    await by_query.open()
    assert [e["event"] for e in await by_query.events(until="end")] == ["run.finished", "end"]


async def test_another_organization_gets_404_and_a_bad_event_number_400(owner, outsider, reverse_block):
    run_id = await asyncio.to_thread(started_run, owner, reverse_block)
    outside = EventStream(run_id, outsider.key)
    assert await outside.open() == 404
    assert json.loads(await outside.body())["success"] is False  # the JSON envelope, as JSON
    bad = EventStream(run_id, owner.key, last_event_id=None, query="after=-1")
    assert await bad.open() == 400
    assert b"event number" in await bad.body()
    nobody = EventStream(run_id, None)
    assert await nobody.open() == 401


async def test_the_websocket_feed_sends_the_events_after_a_number_then_end(owner, member, reverse_block):
    run_id = await asyncio.to_thread(started_run, owner, reverse_block)
    socket = run_socket(run_id, member.key, "after=1")
    connected, _ = await socket.connect()
    assert connected
    first = await socket_frames(socket, until="event")
    assert first[0]["seq"] == 2 and first[0]["event"] == "node.started" and first[0]["node"] == "draft"
    frames = first
    while frames[-1].get("event") != "node.waiting":
        frames += await socket_frames(socket, until="event")
    await asyncio.to_thread(approve, member, run_id)
    frames += await socket_frames(socket, until="end")
    assert [f.get("event") for f in frames][-3:] == ["node.succeeded", "run.finished", None]
    assert (await socket.receive_output(timeout=5))["code"] == 1000
    assert await RunEvent.objects.filter(run_id=run_id).acount() == 9


async def test_the_websocket_feed_closes_4404_for_another_organization_and_4401_for_a_wrong_key(
        owner, outsider, reverse_block):
    run_id = await asyncio.to_thread(started_run, owner, reverse_block)
    for key, code in ((outsider.key, 4404), ("sb-wrong", 4401)):
        socket = run_socket(run_id, key)
        await socket.connect()
        frame = (await socket_frames(socket, until="error"))[-1]
        assert frame["status"] == code - 4000
        assert (await socket.receive_output(timeout=5))["code"] == code


async def test_the_websocket_feed_takes_an_auth_frame_and_closes_when_its_key_is_revoked(owner, member,
                                                                                          reverse_block):
    run_id = await asyncio.to_thread(started_run, owner, reverse_block)
    socket = run_socket(run_id, None)
    await socket.connect()
    await socket.send_json_to({"type": "auth", "api_key": member.key})
    frames = await socket_frames(socket, until="event")
    assert frames[0]["event"] == "run.started"
    # The watcher's key, not the run's: the run goes on, the feed ends within a re-check.
    api_key = await ApiKey.objects.aget(organization=member.organization, created_by=member.user)
    await asyncio.to_thread(api_key_revoke, api_key=api_key)
    frames = await socket_frames(socket, until="error", wait_s=10)
    assert frames[-1]["status"] == 401 and "revoked" in frames[-1]["message"]
    assert (await socket.receive_output(timeout=5))["code"] == 4401
