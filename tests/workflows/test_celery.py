"""The production shape: nodes as Celery tasks in a real worker process on the real Redis, and what\nhappens when that process is killed mid-node."""

from __future__ import annotations

import signal
import uuid

import pytest

from inference.workflows import services
from inference.workflows.models import NodeRun, RunEvent, WorkflowRun
from tests.support.live_server import start_celery_worker as celery_worker
from tests.workflows.conftest import nodes, publish, start, wait_for, wait_node, wait_run

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]  # real Celery workers


def test_a_celery_worker_runs_parallel_nodes_and_resumes_after_an_approval(owner, reverse_block, worker_env,
                                                                          tmp_path, settings):
    settings.WORKFLOW_EXECUTOR = "celery"
    reverse_block(owner.organization)
    document = {"name": "celery", "version": "1", "nodes": [
        {"id": "a", "type": "block", "block": "reverse", "prompt": "a"},
        {"id": "b", "type": "block", "block": "reverse", "prompt": "b"},
        {"id": "ok", "type": "approval", "after": ["a", "b"], "approvers": {"role": "member"}},
        {"id": "join", "type": "block", "block": "reverse", "after": ["ok"],
         "prompt": "{{ nodes.ok.output.a }}{{ nodes.ok.output.b }}"}]}
    worker = celery_worker(worker_env, tmp_path, queue=settings.WORKFLOW_QUEUE, concurrency=4,
                           extra_env={"WORKFLOW_EXECUTOR": "celery"})
    try:
        run_id = start(owner, publish(owner, document))
        wait_node(run_id, "ok", NodeRun.WAITING, timeout=30)
        approval = owner.client().get("/api/approvals?state=pending").json()["data"][0]
        assert approval["review"] == {"a": "a", "b": "b"}
        decision = owner.client().post(f"/api/approvals/{approval['id']}/decision", {"decision": "approve"},
                                       format="json")
        assert decision.status_code == 200
        run = wait_run(run_id, timeout=30)
    finally:
        worker.stop()
    assert run.state == WorkflowRun.SUCCEEDED, (run.error, worker.output()[-2000:])
    assert run.output == "ba"
    assert {n.node_id: n.attempts for n in nodes(run_id).values()} == {"a": 1, "b": 1, "ok": 1, "join": 1}
    assert "workflows.run_node" in worker.output()


def test_a_worker_killed_mid_node_loses_nothing_and_no_finished_node_runs_again(owner, upstream_block, fake_upstream,
                                                                               worker_env, tmp_path, settings):
    settings.WORKFLOW_EXECUTOR = "celery"
    settings.WORKFLOW_LEASE_S = 2.0  # the sweeper below gives a dead worker's node away after this
    tag = uuid.uuid4().hex[:6]
    scenario = {node: f"kill{tag}{node}" + ("-wait1500" if node == "b" else "") for node in "abcd"}
    for node, name in scenario.items():
        upstream_block(owner.organization, f"up-{node}", name)
    document = {"name": "killed", "version": "1", "nodes": [
        {"id": "a", "type": "block", "block": "up-a", "prompt": "a"},
        {"id": "b", "type": "block", "block": "up-b", "prompt": "b", "after": ["a"]},
        {"id": "c", "type": "block", "block": "up-c", "prompt": "c", "after": ["a"]},
        {"id": "d", "type": "block", "block": "up-d", "prompt": "d", "after": ["b", "c"]}]}
    env = {"WORKFLOW_EXECUTOR": "celery", "WORKFLOW_LEASE_S": "2", "WORKFLOW_HEARTBEAT_S": "0.5"}
    calls = fake_upstream.stats.by_scenario
    first = celery_worker(worker_env, tmp_path, queue=settings.WORKFLOW_QUEUE, concurrency=4, extra_env=env)
    try:
        run_id = start(owner, publish(owner, document))
        wait_node(run_id, "c", NodeRun.SUCCEEDED, timeout=30)
        wait_for(lambda: calls.get(scenario["b"]) == 1, what="b's upstream call")
        first.kill(signal.SIGKILL)  # mid-call: b is running, its lease is renewed no more
        first.process.wait(10)
    finally:
        first.stop()
    assert nodes(run_id)["b"].state == NodeRun.RUNNING
    second = celery_worker(worker_env, tmp_path, queue=settings.WORKFLOW_QUEUE, concurrency=4, extra_env=env)
    try:
        # Celery beat's job, by hand: once b's lease lapses the sweeper queues it again for the new worker.
        def finished():
            services.workflows_sweep()
            return WorkflowRun.objects.filter(pk=run_id, state__in=WorkflowRun.FINISHED).first()

        run = wait_for(finished, timeout=40, what="the run to finish on the second worker")
    finally:
        second.stop()
    assert run.state == WorkflowRun.SUCCEEDED, (run.error, second.output()[-2000:])
    assert {n: calls.get(name) for n, name in scenario.items()} == {"a": 1, "b": 2, "c": 1, "d": 1}
    assert {n.node_id: n.attempts for n in nodes(run_id).values()} == {"a": 1, "b": 2, "c": 1, "d": 1}
    requeued = RunEvent.objects.filter(run_id=run_id, kind="node.requeued").values_list("node_id", flat=True)
    assert list(requeued) == ["b"]
    assert "workflows.run_node" in second.output()
