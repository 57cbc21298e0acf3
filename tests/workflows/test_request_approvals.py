"""Approval as a gateway policy (issue 11, item 4): a policy rule's `approval_required` holds each chat
request until a person decides, through the workflows' approval machinery (the same rows, decision
endpoint and deadlines). Clients: the real ASGI application, in process (tests/workflows/live_client.py
for the WebSocket), against the suite's fake upstream."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

import orjson
import pytest
from asgiref.testing import ApplicationCommunicator
from channels.testing import WebsocketCommunicator
from django.test import Client
from django.utils import timezone

from inference import request_log
from inference.backends.queued import streams
from inference.models import RequestLogEntry
from inference.workflows.models import Approval, WorkflowRun
from inference.workflows.services import workflows_sweep
from registry.tenancy.models import PolicyRule
from tests.workflows.conftest import publish, start, wait_for, wait_run
from webapp.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)

HI = [{"role": "user", "content": "ship it?"}]
OWNERS = {"approvers": {"role": "owner"}, "deadline_s": 600}


class Chat:
    """POST /v1/chat/completions, read as it is sent (a held stream starts before its answer)."""

    def __init__(self, key: str, body: dict[str, Any]):
        raw = orjson.dumps(body)
        self.communicator = ApplicationCommunicator(application, {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
            "path": "/v1/chat/completions", "raw_path": b"/v1/chat/completions", "query_string": b"",
            "root_path": "", "client": ("127.0.0.1", 40000), "server": ("testserver", 80),
            "headers": [(b"host", b"testserver"), (b"content-type", b"application/json"),
                        (b"authorization", f"Bearer {key}".encode()), (b"content-length", str(len(raw)).encode())]})
        self.raw = raw
        self.status: int | None = None
        self.headers: dict[str, str] = {}
        self.body = b""
        self.done = False

    async def send(self) -> Chat:
        await self.communicator.send_input({"type": "http.request", "body": self.raw, "more_body": False})
        return self

    async def start(self, wait_s: float = 10) -> int:
        message = await self.communicator.receive_output(wait_s)
        self.status = message["status"]
        self.headers = {k.decode().lower(): v.decode() for k, v in message.get("headers", [])}
        return self.status

    async def read_until(self, needle: bytes, wait_s: float = 10) -> bytes:
        while needle not in self.body and not self.done:
            message = await self.communicator.receive_output(wait_s)
            self.body += message.get("body", b"")
            self.done = not message.get("more_body", False)
        return self.body

    async def finish(self, wait_s: float = 15) -> bytes:
        if self.status is None:
            await self.start(wait_s)
        while not self.done:
            message = await self.communicator.receive_output(wait_s)
            self.body += message.get("body", b"")
            self.done = not message.get("more_body", False)
        return self.body


def held(request_id: str | None = None) -> Approval:
    """The one held request (or the one with that id), once the gateway has stored it."""
    rows = Approval.objects.exclude(request_id="")
    if request_id is not None:
        rows = rows.filter(request_id=request_id)
    return wait_for(lambda: rows.select_related("decided_by").first(), what="the held request")


async def aheld(request_id: str | None = None) -> Approval:
    return await asyncio.to_thread(held, request_id)


def decide(party, approval_id: int, decision: str, **body):
    return party.client().post(f"/api/approvals/{approval_id}/decision", {"decision": decision, **body},
                               format="json")


async def adecide(party, approval_id: int, decision: str, **body):
    return await asyncio.to_thread(decide, party, approval_id, decision, **body)


async def status_of(party, request_id: str) -> tuple[int, dict]:
    communicator = ApplicationCommunicator(application, {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
        "path": f"/v1/requests/{request_id}", "raw_path": f"/v1/requests/{request_id}".encode(),
        "query_string": b"", "root_path": "", "client": ("127.0.0.1", 40000), "server": ("testserver", 80),
        "headers": [(b"host", b"testserver"), (b"authorization", f"Bearer {party.key}".encode())]})
    await communicator.send_input({"type": "http.request", "body": b"", "more_body": False})
    start_message = await communicator.receive_output(10)
    body = (await communicator.receive_output(10))["body"]
    return start_message["status"], json.loads(body)


@pytest.fixture
def gated(owner, upstream_block):
    """make(scenario, rule=OWNERS, org_wide=False) -> a block of the owner's organization whose policy
    (its own rule, or the organization's) holds each request for an owner's approval."""

    def make(scenario: str, rule: Any = OWNERS, *, org_wide: bool = False):
        block = upstream_block(owner.organization, scenario, scenario=scenario)
        PolicyRule.objects.create(organization=owner.organization, block=None if org_wide else block,
                                  approval_required=rule)
        return block

    return make


async def test_a_held_request_is_answered_once_an_owner_approves_and_its_status_says_where_it_stands(
        owner, member, outsider, gated, fake_upstream):
    block = await asyncio.to_thread(gated, "held-approve")
    chat = await Chat(member.key, {"model": block.block_id, "messages": HI}).send()
    approval = await aheld()
    assert approval.review["messages"] == HI and approval.review["model"] == block.block_id
    assert approval.run_id is None and approval.due_at is not None

    code, request = await status_of(member, approval.request_id)
    assert code == 200 and request["status"] == "awaiting_approval"
    assert request["approval"]["id"] == approval.pk and request["approval"]["approvers"] == {"role": "owner"}
    assert (await status_of(outsider, approval.request_id))[0] == 404  # another organization's: not there
    assert (await adecide(outsider, approval.pk, "approve")).status_code == 404
    weaker = await adecide(member, approval.pk, "approve")  # a member, where owners decide
    assert weaker.status_code == 403
    assert fake_upstream.hits["held-approve"] == 0  # nothing ran while it waited

    assert (await adecide(owner, approval.pk, "approve", comment="go")).status_code == 200
    assert await chat.start() == 200
    answer = orjson.loads(await chat.finish())
    assert answer["choices"][0]["message"]["content"] and fake_upstream.hits["held-approve"] == 1
    assert chat.headers["x-request-id"] == approval.request_id
    code, request = await status_of(member, approval.request_id)
    assert request["status"] == "approved" and request["approval"]["decided_by"] == "alice"
    assert (await adecide(owner, approval.pk, "reject")).status_code == 409  # the first decision won


async def test_a_rejected_request_gets_an_openai_error_naming_who_rejected_it_and_never_runs(
        owner, member, gated, fake_upstream):
    block = await asyncio.to_thread(gated, "held-reject")
    chat = await Chat(member.key, {"model": block.block_id, "messages": HI}).send()
    approval = await aheld()
    assert (await adecide(owner, approval.pk, "reject", comment="not today")).status_code == 200
    assert await chat.start() == 403
    error = orjson.loads(await chat.finish())["error"]
    assert error["code"] == "approval_rejected" and error["type"] == "permission_error"
    assert "rejected by alice: not today" in error["message"]
    assert fake_upstream.hits["held-reject"] == 0
    assert (await status_of(member, approval.request_id))[1]["status"] == "rejected"


async def test_a_request_nobody_decides_expires_through_the_sweeper_with_a_clear_error(owner, member, gated):
    block = await asyncio.to_thread(gated, "held-sweep")
    chat = await Chat(member.key, {"model": block.block_id, "messages": HI}).send()
    approval = await aheld()
    later = timezone.now() + timedelta(seconds=OWNERS["deadline_s"] + 1)
    assert (await asyncio.to_thread(workflows_sweep, now=later))["deadlines"] == 1
    assert await chat.start() == 403
    error = orjson.loads(await chat.finish())["error"]
    assert error["code"] == "approval_expired" and "600 s deadline" in error["message"]
    assert (await status_of(member, approval.request_id))[1]["status"] == "expired"
    assert (await adecide(owner, approval.pk, "approve")).status_code == 409  # too late


async def test_a_waiting_request_fires_its_own_deadline_where_no_sweeper_runs(member, gated):
    block = await asyncio.to_thread(gated, "held-deadline", {"approvers": {"role": "owner"}, "deadline_s": 1})
    chat = await Chat(member.key, {"model": block.block_id, "messages": HI}).send()
    assert await chat.start(wait_s=10) == 403
    assert orjson.loads(await chat.finish())["error"]["code"] == "approval_expired"
    assert (await aheld()).decision == "timeout-reject"


async def test_a_held_stream_names_its_request_at_once_then_streams_the_answer_after_approval(
        owner, member, gated, fake_upstream):
    block = await asyncio.to_thread(gated, "held-stream-chunks3")
    chat = await Chat(member.key, {"model": block.block_id, "messages": HI, "stream": True}).send()
    assert await chat.start() == 200  # before any decision: the SSE headers and a comment naming the hold
    first = await chat.read_until(b"\n\n")
    assert first.startswith(b": approval ")
    announced = json.loads(first[len(b": approval "):first.index(b"\n")])
    assert announced["status"] == "awaiting_approval" and announced["id"] == chat.headers["x-request-id"]
    approval = await aheld(announced["id"])
    assert (await adecide(owner, approval.pk, "approve")).status_code == 200
    body = await chat.finish()
    assert body.endswith(b"data: [DONE]\n\n") and b'"status":"approved"' in body
    assert body.count(b'"chat.completion.chunk"') >= 3 and fake_upstream.hits["held-stream-chunks3"] == 1


async def test_a_rejected_stream_ends_with_an_error_event(owner, member, gated, fake_upstream):
    block = await asyncio.to_thread(gated, "held-stream-reject")
    chat = await Chat(member.key, {"model": block.block_id, "messages": HI, "stream": True}).send()
    assert await chat.start() == 200
    approval = await aheld()
    assert (await adecide(owner, approval.pk, "reject")).status_code == 200
    body = await chat.finish()
    last = body.strip().split(b"\n\n")[-1]
    assert last.startswith(b"data: ") and orjson.loads(last[6:])["error"]["code"] == "approval_rejected"
    assert b"[DONE]" not in body and fake_upstream.hits["held-stream-reject"] == 0


async def test_the_websocket_chat_shows_the_wait_as_a_frame_and_answers_after_approval(owner, member, gated):
    block = await asyncio.to_thread(gated, "held-ws-chunks2")
    socket = WebsocketCommunicator(application, "/ws/chat/", headers=[
        (b"origin", b"http://testserver"), (b"host", b"testserver"), (b"authorization", f"Bearer {member.key}".encode())])
    connected, _ = await socket.connect()
    assert connected
    try:
        await socket.send_json_to({"id": "c1", "model": block.block_id, "messages": HI})
        frame = await socket.receive_json_from(10)
        assert frame["type"] == "approval" and frame["id"] == "c1"
        assert frame["request"]["status"] == "awaiting_approval"
        approval = await aheld(frame["request"]["id"])
        assert (await adecide(owner, approval.pk, "approve")).status_code == 200
        frames = []
        while not frames or frames[-1]["type"] not in ("done", "error"):
            frames.append(await socket.receive_json_from(10))
        assert frames[0] == {**frames[0], "type": "approval", "id": "c1"}
        assert frames[0]["request"]["status"] == "approved"
        assert frames[-1]["type"] == "done" and any(f["type"] == "delta" for f in frames)
    finally:
        await socket.disconnect()


async def test_the_sender_cannot_approve_their_own_request_and_an_edit_is_refused(owner, gated):
    block = await asyncio.to_thread(gated, "held-self")
    chat = await Chat(owner.key, {"model": block.block_id, "messages": HI}).send()
    approval = await aheld()
    mine = await adecide(owner, approval.pk, "approve")
    assert mine.status_code == 403 and "someone else" in mine.json()["message"]
    assert (await adecide(owner, approval.pk, "edit", output={"x": 1})).status_code == 400
    await chat.communicator.send_input({"type": "http.disconnect"})
    # The client left: the request is withdrawn, nobody can approve it any more.
    await asyncio.to_thread(wait_for, lambda: Approval.objects.get(pk=approval.pk).state == Approval.CANCELLED,
                            10, "the withdrawal")
    await chat.communicator.wait(5)


async def test_an_organization_wide_rule_holds_every_block_and_a_block_rule_of_false_lifts_it(
        owner, member, gated, upstream_block, fake_upstream):
    block = await asyncio.to_thread(gated, "held-org", org_wide=True)
    free = await asyncio.to_thread(upstream_block, owner.organization, "held-free", scenario="held-free")
    await asyncio.to_thread(PolicyRule.objects.create, organization=owner.organization, block=free,
                            approval_required=False)
    answered = await Chat(member.key, {"model": free.block_id, "messages": HI}).send()
    assert await answered.start() == 200 and fake_upstream.hits["held-free"] == 1
    await answered.finish()
    chat = await Chat(member.key, {"model": block.block_id, "messages": HI}).send()
    approval = await aheld()
    assert approval.review["model"] == block.block_id
    assert (await adecide(owner, approval.pk, "approve")).status_code == 200
    assert await chat.start() == 200


async def test_a_request_cannot_lift_the_rule_itself(member, gated):
    block = await asyncio.to_thread(gated, "held-lift")
    chat = await Chat(member.key, {"model": block.block_id, "messages": HI,
                                   "switchboard": {"approval_required": False}}).send()
    assert await chat.start() == 400
    assert "approval_required" in orjson.loads(await chat.finish())["error"]["message"]


def test_a_workflow_node_calling_a_held_block_fails_closed_rather_than_hold_a_worker(owner, gated):
    gated("held-node")
    run_id = start(owner, publish(owner, {"name": "held", "version": "1", "nodes": [
        {"id": "ask", "type": "block", "block": "held-node", "prompt": "hi"}]}))
    run = wait_run(run_id)
    assert run.state == WorkflowRun.FAILED and "approval_required" in run.error


def test_the_policy_api_stores_the_rule_and_names_bad_approvers(owner, member, upstream_block):
    client = owner.client()
    made = client.post("/api/policies", {"approval_required": True}, format="json")
    assert made.status_code == 201
    assert made.json()["data"]["approval_required"] == {"approvers": {"role": "owner"}, "deadline_s": 3600}
    rule = made.json()["data"]["id"]
    named = client.patch(f"/api/policies/{rule}", {"approval_required": {"approvers": {"users": ["bob"]},
                                                                        "deadline_s": 60}}, format="json")
    assert named.status_code == 200
    stranger = client.patch(f"/api/policies/{rule}", {"approval_required": {"approvers": {"users": ["mallory"]}}},
                            format="json")
    assert stranger.status_code == 422 and "mallory" in json.dumps(stranger.json())
    assert client.patch(f"/api/policies/{rule}", {"approval_required": {"approvers": {"role": "boss"}}},
                        format="json").status_code == 400
    assert client.patch(f"/api/policies/{rule}", {"approval_required": {"deadline_s": 0}},
                        format="json").status_code == 400
    assert member.client().patch(f"/api/policies/{rule}", {"approval_required": False},
                                 format="json").status_code == 403


async def test_a_queued_requests_status_is_queued_for_its_organization_only(owner, outsider):
    # The queued path's record, as QueuedBackend.submit stores it in Redis (inference/backends/queued).
    await streams.request_store("q-status-1", {"block_id": "acme-gpu", "organization_id": owner.organization.pk,
                                               "request": {"model": "acme-gpu"}, "queue": "gpu"})
    try:
        code, request = await status_of(owner, "q-status-1")
        assert code == 200 and request == {"id": "q-status-1", "object": "request", "status": "queued",
                                           "model": "acme-gpu", "approval": None}
        assert (await status_of(outsider, "q-status-1"))[0] == 404
        assert (await status_of(owner, "no-such-request"))[0] == 404
    finally:
        await streams.redis_client().delete(streams.record_key("q-status-1"))


def _browser(party):
    client = Client()
    client.force_login(party.user)
    return client


async def test_a_held_request_shows_in_the_dashboard_queue_with_its_messages_and_an_owner_approves_it_there(
        owner, member, outsider, gated, fake_upstream):
    block = await asyncio.to_thread(gated, "held-dash")
    asked = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "<b>ship</b> it?"}]
    chat = await Chat(member.key, {"model": block.block_id, "messages": asked}).send()
    approval = await aheld()
    owner_page = await asyncio.to_thread(_browser, owner)
    member_page = await asyncio.to_thread(_browser, member)
    outsider_page = await asyncio.to_thread(_browser, outsider)

    queue = await asyncio.to_thread(owner_page.get, "/approvals/")
    assert queue.status_code == 200
    html = queue.content.decode()
    assert f'data-approval="{approval.pk}"' in html and approval.request_id in html and block.block_id in html
    detail = await asyncio.to_thread(owner_page.get, f"/approvals/{approval.pk}/")
    assert detail.status_code == 200
    html = detail.content.decode()
    assert "Held chat request" in html and approval.request_id in html and "sent by bob" in html
    assert "be brief" in html and "&lt;b&gt;ship&lt;/b&gt; it?" in html and "<b>ship" not in html
    assert 'value="edit"' not in html and 'value="approve"' in html  # a held request is decided as sent
    assert (await asyncio.to_thread(outsider_page.get, f"/approvals/{approval.pk}/")).status_code == 404
    refused = await asyncio.to_thread(member_page.post, f"/approvals/{approval.pk}/", {"decision": "approve"})
    assert refused.status_code == 403 and fake_upstream.hits["held-dash"] == 0

    decided = await asyncio.to_thread(owner_page.post, f"/approvals/{approval.pk}/",
                                      {"decision": "approve", "comment": "fine"})
    assert decided.status_code == 302
    assert await chat.start() == 200 and fake_upstream.hits["held-dash"] == 1
    await chat.finish()
    history = (await asyncio.to_thread(owner_page.get, "/approvals/")).content.decode()
    assert f"held request <code>{approval.request_id}</code>" in history and "fine" in history
    after = await asyncio.to_thread(owner_page.get, f"/approvals/{approval.pk}/")
    assert after.status_code == 200 and "approved" in after.content.decode()


async def test_the_sender_of_a_held_request_cannot_decide_it_from_the_dashboard(owner, member, gated):
    block = await asyncio.to_thread(gated, "held-dash-self")
    chat = await Chat(owner.key, {"model": block.block_id, "messages": HI}).send()
    approval = await aheld()
    page = await asyncio.to_thread(_browser, owner)
    mine = await asyncio.to_thread(page.post, f"/approvals/{approval.pk}/", {"decision": "approve"})
    assert mine.status_code == 403 and "someone else" in mine.content.decode()
    await chat.communicator.send_input({"type": "http.disconnect"})
    await asyncio.to_thread(wait_for, lambda: Approval.objects.get(pk=approval.pk).state == Approval.CANCELLED,
                            10, "the withdrawal")
    await chat.communicator.wait(5)


async def test_a_held_request_with_a_nul_character_is_a_400_and_nothing_is_held(member, gated, fake_upstream):
    block = await asyncio.to_thread(gated, "held-nul")
    chat = await Chat(member.key, {"model": block.block_id,
                                   "messages": [{"role": "user", "content": "ship\u0000it"}]}).send()
    assert await chat.start() == 400
    error = orjson.loads(await chat.finish())["error"]
    assert error["param"] == "messages[0].content" and "NUL" in error["message"]
    assert not await asyncio.to_thread(Approval.objects.exists) and fake_upstream.hits["held-nul"] == 0


async def test_a_rejected_or_expired_held_request_is_in_the_request_log_with_its_403(owner, member, gated):
    request_log.discard_pending()
    block = await asyncio.to_thread(gated, "held-logged")
    chat = await Chat(member.key, {"model": block.block_id, "messages": HI, "stream": True}).send()
    approval = await aheld()
    assert (await adecide(owner, approval.pk, "reject", comment="no")).status_code == 200
    await chat.finish()
    await request_log.aflush()
    row = await RequestLogEntry.objects.aget(organization=owner.organization)
    assert (row.status, row.request_id, row.model, row.stream) == (403, approval.request_id, block.block_id, True)
    assert "rejected by alice" in row.error
