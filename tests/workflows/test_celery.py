"""The production shape: nodes as Celery tasks in a real worker process on the real Redis."""

from __future__ import annotations

import pytest

from inference.workflows.models import NodeRun, WorkflowRun
from tests.workers.conftest import celery_worker
from tests.workflows.conftest import nodes, publish, start, wait_node, wait_run

pytestmark = pytest.mark.django_db(transaction=True)


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
