"""The approvals and workflows pages: the live queue, deciding (schema-checked edits, the first
decision winning, the loser told), uploads with errors in place, starting a run and its DAG."""

from __future__ import annotations

import asyncio
import json

import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient, Client

from inference.workflows.models import Approval, NodeRun, Workflow, WorkflowRun
from tests.workflows.conftest import approval_of, publish, start, wait_node, wait_run

pytestmark = pytest.mark.django_db(transaction=True)

SCHEMA = {"type": "object", "required": ["summary"], "properties": {"summary": {"type": "string", "maxLength": 20}},
          "additionalProperties": False}


def reviewed(**approval) -> dict:
    return {"name": "reviewed", "version": "1", "nodes": [
        {"id": "draft", "type": "block", "block": "reverse", "prompt": "tfard", "output_format": "text"},
        {"id": "review", "type": "approval", "after": ["draft"], "review": {"summary": "{{ nodes.draft.output }}"},
         "approvers": {"role": "owner"}, **approval},
        {"id": "publish", "type": "block", "block": "reverse", "after": ["review"],
         "prompt": "{{ nodes.review.output.summary }}"}]}


def browser(party) -> Client:
    client = Client()
    client.force_login(party.user)
    return client


@pytest.fixture
def paused(owner, reverse_block) -> Approval:
    reverse_block(owner.organization)
    run_id = start(owner, publish(owner, reviewed(schema=SCHEMA, deadline="1h")))
    wait_node(run_id, "review", NodeRun.WAITING)
    return approval_of(run_id, "review")


def test_the_queue_shows_a_paused_node_with_its_payload_run_approvers_and_deadline(owner, paused):
    page = browser(owner).get("/approvals/").content.decode()
    assert f'data-approval="{paused.pk}"' in page and f"run {paused.run_id}" in page
    assert "&quot;summary&quot;: &quot;draft&quot;" in page or "draft" in page
    assert "Decided by any owner" in page and 'class="countdown"' in page


def test_the_queue_polls_its_own_partial(owner, paused):
    body = browser(owner).get("/approvals/", HTTP_HX_REQUEST="true").content.decode()
    assert body.lstrip().startswith('<ul class="queue" data-count="1">') and "<html" not in body


async def test_the_queue_feed_says_when_an_approval_arrives(owner, reverse_block):
    await sync_to_async(reverse_block)(owner.organization)
    client = AsyncClient()
    await client.aforce_login(owner.user)
    response = await client.get("/approvals/feed")
    assert response.status_code == 200 and response["Content-Type"] == "text/event-stream"
    chunks = aiter(response.streaming_content)
    assert await anext(chunks) == b"retry: 2000\n\n"
    workflow_id = await sync_to_async(publish)(owner, reviewed())
    run_id = await sync_to_async(start)(owner, workflow_id)
    await sync_to_async(wait_node)(run_id, "review", NodeRun.WAITING)
    assert await asyncio.wait_for(anext(chunks), timeout=10) == b"event: queue\ndata: changed\n\n"
    await chunks.aclose()


async def test_the_queue_feed_needs_a_signed_in_member(db):
    assert (await AsyncClient().get("/approvals/feed")).status_code == 302


def test_an_owner_approves_and_the_run_finishes(owner, paused):
    response = browser(owner).post(f"/approvals/{paused.pk}/", {"decision": "approve", "comment": "fine"})
    assert response.status_code == 302
    run = wait_run(paused.run_id)
    assert run.state == WorkflowRun.SUCCEEDED and run.output == "tfard"
    history = browser(owner).get("/approvals/").content.decode()
    assert f'data-approval="{paused.pk}"' in history and "fine" in history
    assert 'data-count="0"' in history


def test_an_edit_that_breaks_the_schema_is_shown_in_place_and_decides_nothing(owner, paused):
    response = browser(owner).post(f"/approvals/{paused.pk}/",
                                   {"decision": "edit", "output": json.dumps({"summary": "x" * 30})})
    page = response.content.decode()
    assert response.status_code == 400 and 'role="alert"' in page and "is too long" in page
    assert "x" * 30 in page  # the edit box keeps what was typed
    assert Approval.objects.get(pk=paused.pk).state == Approval.PENDING


def test_an_edit_that_is_not_json_is_a_400_in_place(owner, paused):
    response = browser(owner).post(f"/approvals/{paused.pk}/", {"decision": "edit", "output": "{nope"})
    assert response.status_code == 400 and "not valid JSON" in response.content.decode()


def test_a_valid_edit_becomes_the_nodes_output(owner, paused):
    response = browser(owner).post(f"/approvals/{paused.pk}/",
                                   {"decision": "edit", "output": json.dumps({"summary": "short"})})
    assert response.status_code == 302
    assert wait_run(paused.run_id).output == "trohs"


def test_the_second_of_two_deciders_is_told_who_won(owner, paused):
    first, second = browser(owner), browser(owner)
    assert first.get(f"/approvals/{paused.pk}/").status_code == second.get(f"/approvals/{paused.pk}/").status_code
    assert first.post(f"/approvals/{paused.pk}/", {"decision": "reject", "comment": "no"}).status_code == 302
    late = second.post(f"/approvals/{paused.pk}/", {"decision": "approve"})
    page = late.content.decode()
    assert late.status_code == 409 and "Someone else decided first" in page and "already rejected (alice)" in page
    assert wait_run(paused.run_id).state == WorkflowRun.FAILED


def test_a_member_who_is_not_an_approver_sees_the_item_but_is_refused(member, paused):
    client = browser(member)
    page = client.get(f"/approvals/{paused.pk}/").content.decode()
    assert "You are not one of this node's approvers" in page and 'name="decision"' not in page
    refused = client.post(f"/approvals/{paused.pk}/", {"decision": "approve"})
    assert refused.status_code == 403 and "not an approver" in refused.content.decode()
    assert Approval.objects.get(pk=paused.pk).state == Approval.PENDING


def test_an_unknown_decision_is_a_400(owner, paused):
    assert browser(owner).post(f"/approvals/{paused.pk}/", {"decision": "maybe"}).status_code == 400


def test_another_organization_neither_sees_nor_decides(outsider, paused):
    client = browser(outsider)
    assert f'data-approval="{paused.pk}"' not in client.get("/approvals/").content.decode()
    assert client.get(f"/approvals/{paused.pk}/").status_code == 404
    assert client.post(f"/approvals/{paused.pk}/", {"decision": "approve"}).status_code == 404
    assert client.get(f"/workflows/runs/{paused.run_id}/").status_code == 404
    assert client.post(f"/workflows/runs/{paused.run_id}/cancel").status_code == 404


def test_the_run_page_draws_the_dag_with_each_nodes_state(owner, paused):
    page = browser(owner).get(f"/workflows/runs/{paused.run_id}/").content.decode()
    assert '<svg class="dag"' in page
    assert 'data-node="draft" data-state="succeeded"' in page and 'data-node="review" data-state="waiting"' in page
    # Still running: the page follows the run's event feed, with a slow poll behind it.
    assert f'data-events="/api/workflow-runs/{paused.run_id}/events"' in page and "every 5s" in page
    partial = browser(owner).get(f"/workflows/runs/{paused.run_id}/", HTTP_HX_REQUEST="true").content.decode()
    assert partial.lstrip().startswith('<div id="run"') and "<html" not in partial


def test_a_member_cannot_cancel_an_owners_run_but_the_owner_can(owner, member, paused):
    assert browser(member).post(f"/workflows/runs/{paused.run_id}/cancel").status_code == 403
    assert browser(owner).post(f"/workflows/runs/{paused.run_id}/cancel").status_code == 302
    assert WorkflowRun.objects.get(pk=paused.run_id).state == WorkflowRun.CANCELLED


def test_an_owner_uploads_yaml_and_sees_it_listed(owner, reverse_block):
    reverse_block(owner.organization)
    document = "name: yaml-flow\nversion: '1'\nnodes:\n  - {id: only, type: block, block: reverse, prompt: ab}\n"
    response = browser(owner).post("/workflows/", {"document": document})
    workflow = Workflow.objects.get(organization=owner.organization, name="yaml-flow")
    assert response.status_code == 302 and response["Location"] == f"/workflows/{workflow.pk}/"
    assert "yaml-flow" in browser(owner).get("/workflows/").content.decode()


@pytest.mark.parametrize(("document", "status", "message"), [
    ("", 400, "paste a workflow document"),
    ("{not: [valid", 400, "neither JSON nor YAML"),
    ('{"name": "x", "version": "1", "nodes": [{"id": "a", "type": "block", "block": "nowhere", "prompt": "p"}]}',
     422, "nowhere"),
])
def test_a_bad_upload_shows_every_error_in_place(owner, reverse_block, document, status, message):
    response = browser(owner).post("/workflows/", {"document": document})
    page = response.content.decode()
    assert response.status_code == status and 'id="upload-errors"' in page and message in page
    assert not Workflow.objects.filter(organization=owner.organization).exists()


def test_a_member_may_not_upload(member):
    assert browser(member).post("/workflows/", {"document": "{}"}).status_code == 403


def test_a_member_starts_a_run_from_the_workflow_page(owner, member, reverse_block):
    reverse_block(owner.organization)
    workflow_id = publish(owner, {"name": "plain", "version": "1", "nodes": [
        {"id": "only", "type": "block", "block": "reverse", "prompt": "ab"}]})
    response = browser(member).post(f"/workflows/{workflow_id}/", {"input": "{}"})
    assert response.status_code == 302
    run = WorkflowRun.objects.get(version__workflow_id=workflow_id)
    assert response["Location"] == f"/workflows/runs/{run.pk}/"
    assert wait_run(run.pk).output == "ba"


def test_a_bad_run_input_is_a_400_in_place(owner, reverse_block):
    reverse_block(owner.organization)
    workflow_id = publish(owner, {"name": "plain", "version": "1", "nodes": [
        {"id": "only", "type": "block", "block": "reverse", "prompt": "ab"}]})
    for body in ({"input": "{oops"}, {"input": "{}", "version": "x"}, {"input": "{}", "version": "99"}):
        response = browser(owner).post(f"/workflows/{workflow_id}/", body)
        assert response.status_code in (400, 404) and 'id="start-errors"' in response.content.decode()
    assert not WorkflowRun.objects.exists()


def test_another_organizations_workflow_is_404(outsider, owner, reverse_block):
    reverse_block(owner.organization)
    workflow_id = publish(owner, {"name": "plain", "version": "1", "nodes": [
        {"id": "only", "type": "block", "block": "reverse", "prompt": "ab"}]})
    assert browser(outsider).get(f"/workflows/{workflow_id}/").status_code == 404
    assert browser(outsider).post(f"/workflows/{workflow_id}/", {"input": "{}"}).status_code == 404


def test_nul_characters_in_an_edit_or_a_comment_are_a_400_not_a_500(owner, paused):
    client = browser(owner)
    edit = client.post(f"/approvals/{paused.pk}/", {"decision": "edit", "output": '{"summary": "a\\u0000"}'})
    assert edit.status_code == 400 and "NUL" in edit.content.decode()
    comment = client.post(f"/approvals/{paused.pk}/", {"decision": "approve", "comment": "ok\x00"})
    assert comment.status_code == 400 and "NUL" in comment.content.decode()
    assert Approval.objects.get(pk=paused.pk).state == Approval.PENDING


def test_nul_characters_in_an_upload_or_a_run_input_are_a_400_not_a_500(owner, reverse_block):
    reverse_block(owner.organization)
    client = browser(owner)
    document = 'name: "nul\\0flow"\nversion: "1"\nnodes:\n  - {id: only, type: block, block: reverse, prompt: ab}\n'
    assert client.post("/workflows/", {"document": document}).status_code == 400
    assert not Workflow.objects.exists()
    workflow_id = publish(owner, {"name": "plain", "version": "1", "nodes": [
        {"id": "only", "type": "block", "block": "reverse", "prompt": "ab"}]})
    assert client.post(f"/workflows/{workflow_id}/", {"input": '{"a": "\\u0000"}'}).status_code == 400
    assert not WorkflowRun.objects.exists()
