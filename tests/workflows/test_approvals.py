"""Human approval: a durable pause, decisions (approve, reject, edit checked by a schema), the first
decision winning under concurrency, decisions before arrival, and deadlines fired by the sweeper."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from inference.workflows.models import Approval, NodeRun, WorkflowRun
from inference.workflows.services import workflows_sweep
from tests.workflows.conftest import approval_of, nodes, publish, start, wait_node, wait_run

pytestmark = pytest.mark.django_db(transaction=True)

SCHEMA = {"type": "object", "required": ["summary"], "properties": {"summary": {"type": "string", "maxLength": 20}},
          "additionalProperties": False}


def reviewed(first: str = "reverse", **approval) -> dict:
    return {"name": "reviewed", "version": "1", "nodes": [
        {"id": "draft", "type": "block", "block": first, "prompt": "tfard", "output_format": "text"},
        {"id": "review", "type": "approval", "after": ["draft"], "review": {"summary": "{{ nodes.draft.output }}"},
         "approvers": {"role": "owner"}, **approval},
        {"id": "publish", "type": "block", "block": "reverse", "after": ["review"],
         "prompt": "{{ nodes.review.output.summary }}"}]}


def decide(party, approval_id: int, decision: str, **body):
    return party.client().post(f"/api/approvals/{approval_id}/decision", {"decision": decision, **body}, format="json")


def test_a_run_pauses_at_an_approval_holding_nothing_and_resumes_when_an_owner_approves(owner, member, outsider,
                                                                                       reverse_block):
    reverse_block(owner.organization)
    run_id = start(owner, publish(owner, reviewed()))
    wait_node(run_id, "review", NodeRun.WAITING)
    approval = approval_of(run_id, "review")
    assert approval.state == Approval.PENDING and approval.review == {"summary": "draft"}
    # Durable: the pause is rows only. No node holds a lease (nothing is running) and the run is open.
    assert not NodeRun.objects.filter(run_id=run_id, state__in=(NodeRun.RUNNING, NodeRun.QUEUED)).exists()
    assert WorkflowRun.objects.get(pk=run_id).state == WorkflowRun.RUNNING

    listed = member.client().get("/api/approvals?state=pending").json()["data"]
    assert [(a["id"], a["reached"]) for a in listed] == [(approval.pk, True)]
    assert outsider.client().get("/api/approvals?state=pending").json()["data"] == []
    assert outsider.client().get(f"/api/approvals/{approval.pk}").status_code == 404
    assert decide(outsider, approval.pk, "approve").status_code == 404
    refused = decide(member, approval.pk, "approve")
    assert refused.status_code == 403 and "not an approver" in refused.json()["message"]
    assert member.client().get("/api/approvals?state=bogus").status_code == 400

    answer = decide(owner, approval.pk, "approve", comment="fine")
    assert answer.status_code == 200 and answer.json()["data"]["decidedBy"] == "alice"
    run = wait_run(run_id)
    assert run.state == WorkflowRun.SUCCEEDED and run.output == "tfard"
    assert nodes(run_id)["review"].output == {"summary": "draft"}


def test_a_rejection_fails_the_run_and_names_who_rejected(owner, reverse_block):
    reverse_block(owner.organization)
    run_id = start(owner, publish(owner, reviewed()))
    wait_node(run_id, "review", NodeRun.WAITING)
    assert decide(owner, approval_of(run_id, "review").pk, "reject", comment="off topic").status_code == 200
    run = wait_run(run_id)
    assert run.state == WorkflowRun.FAILED and "rejected by alice: off topic" in run.error
    assert nodes(run_id)["publish"].state == NodeRun.CANCELLED


def test_an_edit_is_checked_against_the_schema_and_becomes_the_output_with_its_diff(owner, reverse_block):
    reverse_block(owner.organization)
    run_id = start(owner, publish(owner, reviewed(schema=SCHEMA)))
    wait_node(run_id, "review", NodeRun.WAITING)
    approval = approval_of(run_id, "review")
    bad = decide(owner, approval.pk, "edit", output={"summary": "x" * 30, "extra": 1})
    assert bad.status_code == 400
    assert any("Additional properties" in e for e in bad.json()["errors"])
    assert any("output['summary']" in e and "is too long" in e for e in bad.json()["errors"])
    assert decide(owner, approval.pk, "edit").status_code == 400  # an edit without its output
    assert approval_of(run_id, "review").state == Approval.PENDING

    good = decide(owner, approval.pk, "edit", output={"summary": "better"})
    assert good.status_code == 200
    assert good.json()["data"]["diff"] == [{"path": "/summary", "old": "draft", "new": "better", "op": "replace"}]
    run = wait_run(run_id)
    assert run.state == WorkflowRun.SUCCEEDED and run.output == "retteb"


def test_concurrent_decisions_have_one_winner_and_the_next_node_starts_once(owner, reverse_block):
    reverse_block(owner.organization)
    run_id = start(owner, publish(owner, reviewed()))
    wait_node(run_id, "review", NodeRun.WAITING)
    approval_id = approval_of(run_id, "review").pk
    barrier = threading.Barrier(8)
    statuses: list[int] = []

    def one(decision: str) -> None:
        try:
            barrier.wait()
            statuses.append(decide(owner, approval_id, decision).status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=one, args=("approve" if i % 2 else "reject",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200] + [409] * 7
    run = wait_run(run_id)
    publish_node = nodes(run_id)["publish"]
    if approval_of(run_id, "review").state == Approval.APPROVED:
        assert run.state == WorkflowRun.SUCCEEDED and publish_node.attempts == 1
    else:
        assert run.state == WorkflowRun.FAILED and publish_node.attempts == 0


def test_a_decision_before_the_run_reaches_the_node_is_kept_and_applied_on_arrival(owner, reverse_block,
                                                                                 upstream_block):
    reverse_block(owner.organization)
    upstream_block(owner.organization, "slow", "wait700-chunks1")
    run_id = start(owner, publish(owner, reviewed(first="slow")))
    approval = approval_of(run_id, "review")
    assert approval.reached_at is None
    assert decide(owner, approval.pk, "approve").status_code == 200
    assert nodes(run_id)["review"].state == NodeRun.PENDING  # not there yet
    run = wait_run(run_id)
    assert run.state == WorkflowRun.SUCCEEDED and run.output == "0kot"
    assert approval_of(run_id, "review").reached_at is not None


def _due(run_id: int) -> Approval:
    wait_node(run_id, "review", NodeRun.WAITING)
    return approval_of(run_id, "review")


@pytest.mark.parametrize("on_timeout,state,output", [
    ("reject", WorkflowRun.FAILED, None),
    ("approve", WorkflowRun.SUCCEEDED, "tfard"),
    ({"default": {"summary": "default"}}, WorkflowRun.SUCCEEDED, "tluafed"),
])
def test_a_deadline_is_fired_by_the_sweeper(owner, reverse_block, on_timeout, state, output):
    reverse_block(owner.organization)
    run_id = start(owner, publish(owner, reviewed(deadline="1h", on_timeout=on_timeout)))
    approval = _due(run_id)
    assert approval.due_at is not None
    assert workflows_sweep()["deadlines"] == 0  # not due yet
    assert workflows_sweep(now=approval.due_at + timedelta(seconds=1))["deadlines"] == 1
    run = wait_run(run_id)
    assert run.state == state and run.output == output
    if state == WorkflowRun.FAILED:
        assert "rejected by its deadline" in run.error
    # A decision after the deadline fired is refused; the sweeper again changes nothing.
    assert decide(owner, approval.pk, "approve").status_code == 409
    assert workflows_sweep(now=approval.due_at + timedelta(hours=2))["deadlines"] == 0


def test_an_escalation_hands_the_approval_to_other_approvers_with_a_new_deadline(owner, member, reverse_block):
    reverse_block(owner.organization)
    document = reviewed(deadline="10m", on_timeout={"escalate": {"users": ["bob"]}, "deadline": "1h"})
    run_id = start(owner, publish(owner, document))
    approval = _due(run_id)
    assert decide(member, approval.pk, "approve").status_code == 403  # bob is not an approver yet
    first = approval.due_at + timedelta(seconds=1)
    assert workflows_sweep(now=first)["deadlines"] == 1
    approval.refresh_from_db()
    assert approval.escalated and approval.approvers == {"users": ["bob"]} and approval.state == Approval.PENDING
    assert decide(member, approval.pk, "approve").status_code == 200
    assert wait_run(run_id).state == WorkflowRun.SUCCEEDED


def test_a_decision_that_beats_the_deadline_wins_over_the_sweeper(owner, reverse_block):
    reverse_block(owner.organization)
    run_id = start(owner, publish(owner, reviewed(deadline=60, on_timeout="reject")))
    approval = _due(run_id)
    assert decide(owner, approval.pk, "approve").status_code == 200
    assert workflows_sweep(now=timezone.now() + timedelta(hours=1))["deadlines"] == 0
    assert wait_run(run_id).state == WorkflowRun.SUCCEEDED
    assert approval_of(run_id, "review").decision == "approve"


def test_the_sweeper_command_runs_once(owner, reverse_block, capsys):
    call_command("workflows_sweeper", "--once")
    assert "deadlines=0" in capsys.readouterr().out


def test_a_node_whose_worker_died_is_given_to_another_executor_and_a_finished_node_never_runs_again(owner,
                                                                                                 reverse_block):
    reverse_block(owner.organization)
    document = {"name": "lease", "version": "1", "nodes": [
        {"id": "a", "type": "block", "block": "reverse", "prompt": "a"},
        {"id": "b", "type": "block", "block": "reverse", "prompt": "b", "after": ["a"]}]}
    run_id = start(owner, publish(owner, document))
    run = wait_run(run_id)
    assert run.state == WorkflowRun.SUCCEEDED
    # A dead executor's claim: running, lease lapsed. The sweeper re-queues it and it runs again.
    NodeRun.objects.filter(run_id=run_id, node_id="b").update(state=NodeRun.RUNNING,
                                                              lease_until=timezone.now() - timedelta(seconds=1))
    WorkflowRun.objects.filter(pk=run_id).update(state=WorkflowRun.RUNNING)
    assert workflows_sweep()["released"] == 1
    assert wait_run(run_id).state == WorkflowRun.SUCCEEDED
    found = nodes(run_id)
    assert found["b"].attempts == 2 and found["a"].attempts == 1
