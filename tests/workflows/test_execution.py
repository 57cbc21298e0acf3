"""Runs on the in-process executor: parallel branches, joins, conditions, map, failures, cancel."""

from __future__ import annotations

import pytest

from inference.workflows.models import NodeRun, WorkflowRun
from tests.workflows.conftest import nodes, publish, start, wait_for, wait_node, wait_run

pytestmark = pytest.mark.django_db(transaction=True)


def diamond(slow: str) -> dict:
    return {"name": "diamond", "version": "1", "inputs": {"text": {"type": "string"}}, "nodes": [
        {"id": "a", "type": "block", "block": "reverse", "prompt": "{{ input.text }}"},
        {"id": "b", "type": "block", "block": slow, "prompt": "left of {{ nodes.a.output }}", "after": ["a"]},
        {"id": "c", "type": "block", "block": slow, "prompt": "right", "after": ["a"],
         "params": {"temperature": 0, "max_tokens": 5}},
        {"id": "d", "type": "block", "block": "reverse", "after": ["b", "c"],
         "prompt": "{{ nodes.a.output }}|{{ nodes.b.output }}|{{ nodes.c.output }}"}],
        "output": {"first": "{{ nodes.a.output }}", "last": "{{ nodes.d.output }}"}}


def test_a_diamond_runs_its_branches_in_parallel_and_the_join_gets_both_outputs(owner, reverse_block, upstream_block):
    reverse_block(owner.organization)
    upstream_block(owner.organization, "slow", "wait300-chunks2")
    run_id = start(owner, publish(owner, diamond("slow")), {"text": "abc"})
    run = wait_run(run_id)
    assert run.state == WorkflowRun.SUCCEEDED, run.error
    found = nodes(run_id)
    assert {n.state for n in found.values()} == {NodeRun.SUCCEEDED}
    b, c = found["b"], found["c"]
    assert b.started_at < c.finished_at and c.started_at < b.finished_at  # they overlapped
    assert found["d"].input["parents"] == {"b": "tok0 tok1", "c": "tok0 tok1"}
    assert run.output == {"first": "cba", "last": "1kot 0kot|1kot 0kot|abc"}
    assert found["b"].input["messages"] == [{"role": "user", "content": "left of cba"}]
    assert found["c"].input["params"] == {"temperature": 0, "max_tokens": 5}
    assert all(n.attempts == 1 for n in found.values())

    detail = owner.client().get(f"/api/workflow-runs/{run_id}").json()["data"]
    assert [n["id"] for n in detail["nodes"]] == ["a", "b", "c", "d"]
    assert detail["nodes"][1]["durationMs"] >= 250


def branching() -> dict:
    return {"name": "branch", "version": "1", "inputs": {"score": {"type": "number"}}, "nodes": [
        {"id": "check", "type": "condition", "if": {"left": "{{ input.score }}", "op": ">=", "right": 5},
         "then": ["high"], "else": ["low"]},
        {"id": "high", "type": "block", "block": "reverse", "prompt": "hgih"},
        {"id": "low", "type": "block", "block": "reverse", "prompt": "wol"},
        {"id": "after_high", "type": "block", "block": "reverse", "prompt": "x", "after": ["high"]},
        {"id": "join", "type": "block", "block": "reverse", "after": ["high", "low"],
         "prompt": "{{ nodes.high.output }}{{ nodes.low.output }}"}]}


@pytest.mark.parametrize("score,taken,skipped", [(7, "high", {"low"}), (2, "low", {"high", "after_high"})])
def test_a_condition_runs_one_branch_skips_the_other_and_the_join_still_runs(owner, reverse_block, score, taken, skipped):
    reverse_block(owner.organization)
    run = wait_run(start(owner, publish(owner, branching()), {"score": score}))
    assert run.state == WorkflowRun.SUCCEEDED, run.error
    found = nodes(run.pk)
    assert {n for n, node in found.items() if node.state == NodeRun.SKIPPED} == skipped
    assert found[taken].output == taken
    # The skipped branch's output is null: in a longer string it reads as "null".
    assert found["join"].output == ("null" + taken)[::-1] if taken == "low" else (taken + "null")[::-1]


def test_a_map_calls_the_block_once_per_item_in_order_and_refuses_too_many_items(owner, reverse_block):
    reverse_block(owner.organization)
    document = {"name": "map", "version": "1", "inputs": {"words": {"type": "array"}}, "nodes": [
        {"id": "each", "type": "map", "block": "reverse", "over": "{{ input.words }}", "max_items": 3,
         "concurrency": 2, "prompt": "{{ index }}:{{ item }}"}]}
    workflow_id = publish(owner, document)
    run = wait_run(start(owner, workflow_id, {"words": ["ab", "cd", "ef"]}))
    assert run.state == WorkflowRun.SUCCEEDED and run.output == ["ba:0", "dc:1", "fe:2"]
    too_many = wait_run(start(owner, workflow_id, {"words": ["a", "b", "c", "d"]}))
    assert too_many.state == WorkflowRun.FAILED
    assert "gave 4 items; this node allows at most 3" in too_many.error


def test_a_failing_block_fails_the_run_after_the_policy_retries_and_nothing_downstream_starts(owner, reverse_block,
                                                                                              upstream_block,
                                                                                              fake_upstream):
    before = fake_upstream.stats.by_scenario.get("status500", 0)
    reverse_block(owner.organization)
    upstream_block(owner.organization, "broken", "status500")
    owner.client().post("/api/policies", {"scope": "organization", "retries": 1, "backoff_s": 0}, format="json")
    document = {"name": "fails", "version": "1", "nodes": [
        {"id": "bad", "type": "block", "block": "broken", "prompt": "x"},
        {"id": "next", "type": "block", "block": "reverse", "prompt": "x", "after": ["bad"]}]}
    run = wait_run(start(owner, publish(owner, document)))
    assert run.state == WorkflowRun.FAILED
    assert "node 'bad' failed: block 'broken' answered 502: upstream returned 500" in run.error
    assert fake_upstream.stats.by_scenario["status500"] - before == 2  # the call and the policy's one retry
    found = nodes(run.pk)
    assert found["bad"].state == NodeRun.FAILED and found["next"].state == NodeRun.CANCELLED


def test_a_policy_fallback_serves_a_failing_block(owner, reverse_block, upstream_block):
    reverse_block(owner.organization)
    upstream_block(owner.organization, "broken", "status503")
    response = owner.client().post("/api/policies", {"scope": "organization", "fallbacks": ["reverse"], "retries": 0},
                                   format="json")
    assert response.status_code == 201, response.json()
    document = {"name": "fallback", "version": "1",
                "nodes": [{"id": "n", "type": "block", "block": "broken", "prompt": "olleh"}]}
    run = wait_run(start(owner, publish(owner, document)))
    assert run.state == WorkflowRun.SUCCEEDED and run.output == "hello"


def test_cancel_stops_the_run_and_closes_the_in_flight_model_call(owner, member, outsider, upstream_block,
                                                                 fake_upstream):
    upstream_block(owner.organization, "stuck", "wait60000")
    document = {"name": "hang", "version": "1", "nodes": [
        {"id": "wait", "type": "block", "block": "stuck", "prompt": "x"},
        {"id": "never", "type": "block", "block": "stuck", "prompt": "x", "after": ["wait"]}]}
    run_id = start(owner, publish(owner, document))
    wait_node(run_id, "wait", NodeRun.RUNNING)
    wait_for(lambda: fake_upstream.stats.by_scenario.get("wait60000"), what="the upstream call")
    aborted = fake_upstream.stats.waits_aborted
    assert outsider.client().post(f"/api/workflow-runs/{run_id}/cancel").status_code == 404
    assert member.client().post(f"/api/workflow-runs/{run_id}/cancel").status_code == 403
    response = owner.client().post(f"/api/workflow-runs/{run_id}/cancel")
    assert response.status_code == 200 and response.json()["data"]["state"] == WorkflowRun.CANCELLED
    wait_node(run_id, "wait", NodeRun.CANCELLED, timeout=5)
    wait_for(lambda: fake_upstream.stats.waits_aborted > aborted, timeout=5, what="the upstream to see the close")
    assert nodes(run_id)["never"].state == NodeRun.CANCELLED
    assert owner.client().post(f"/api/workflow-runs/{run_id}/cancel").status_code == 409


def test_run_input_is_checked_against_the_declared_inputs_naming_each_error(owner, reverse_block):
    reverse_block(owner.organization)
    document = {"name": "typed", "version": "1",
                "inputs": {"text": {"type": "string"}, "n": {"type": "integer"}, "opt": {"type": "array", "required": False}},
                "nodes": [{"id": "say", "type": "block", "block": "reverse", "prompt": "{{ input.text }}"}]}
    workflow_id = publish(owner, document)
    response = owner.client().post(f"/api/workflows/{workflow_id}/runs", {"input": {"n": "3", "extra": 1}},
                                   format="json")
    assert response.status_code == 400
    assert response.json()["errors"] == ["input.n: expected integer, got str", "input.text: required (string)",
                                         "input.extra: not an input of this workflow (known: n, opt, text)"]
    assert not WorkflowRun.objects.exists()


def test_members_start_and_read_runs_and_other_organizations_get_404(owner, member, outsider, reverse_block):
    reverse_block(owner.organization)
    document = {"name": "echo", "version": "1",
                "nodes": [{"id": "say", "type": "block", "block": "reverse", "prompt": "olleh"}]}
    workflow_id = publish(owner, document)
    run_id = start(member, workflow_id)
    assert wait_run(run_id).output == "hello"
    assert member.client().get(f"/api/workflow-runs/{run_id}").json()["data"]["state"] == "succeeded"
    assert outsider.client().get(f"/api/workflow-runs/{run_id}").status_code == 404
    assert outsider.client().get(f"/api/workflows/{workflow_id}/runs").status_code == 404


def test_a_run_stays_on_its_version_when_a_new_one_is_published(owner, reverse_block, upstream_block):
    reverse_block(owner.organization)
    upstream_block(owner.organization, "slow", "wait300-chunks1")
    v1 = {"name": "pinned", "version": "1", "nodes": [
        {"id": "a", "type": "block", "block": "slow", "prompt": "x"},
        {"id": "b", "type": "block", "block": "reverse", "prompt": "1v", "after": ["a"]}]}
    workflow_id = publish(owner, v1)
    run_id = start(owner, workflow_id)
    publish(owner, {**v1, "version": "2", "nodes": [v1["nodes"][0], {**v1["nodes"][1], "prompt": "2v"}]})
    assert wait_run(run_id).output == "v1"
    assert wait_run(start(owner, workflow_id)).output == "v2"
