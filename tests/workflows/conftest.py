"""Workflows run against the suite's PostgreSQL. Execution tests are transactional: nodes run on the
in-process executor's threads (or in a Celery worker), which see only committed rows."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from inference import metrics, request_log
from inference.workers.loop import close_worker_loop
from inference.workflows.models import Approval, NodeRun, WorkflowRun
from registry.auth import clear_principal_cache
from registry.models import Block
from registry.tenancy.access import clear_block_cache
from tests.factories import BlockFactory

# The worker tests' database and Redis plumbing, shared rather than copied.
from tests.workers.conftest import _drop_stray_connections, worker_env  # noqa: F401


@pytest.fixture(autouse=True)
def _in_process_executor(settings):
    settings.WORKFLOW_EXECUTOR = "inprocess"
    settings.WORKFLOW_SWEEPER_THREAD = False  # tests sweep by hand, at the instant they choose
    # No block embedding jobs: on a real worker they would take its threads (loading the embedding model
    # takes tens of seconds on a loaded machine) before the nodes a test waits for.
    settings.EMBEDDINGS_DISPATCH = "off"
    clear_block_cache()
    clear_principal_cache()
    yield
    metrics.discard_pending()
    request_log.discard_pending()


@pytest.fixture(scope="session", autouse=True)
def _close_the_node_loop() -> Iterator[None]:
    yield
    close_worker_loop()  # block calls ran on the shared loop: close its pooled upstream sessions


@pytest.fixture
def reverse_block() -> Callable[..., Block]:
    """make(org, block_id) -> a block answering with its prompt reversed (the seed's example backend)."""

    def make(organization, block_id: str = "reverse", **fields) -> Block:
        return BlockFactory(organization=organization, block_id=block_id, name=block_id, **fields)

    return make


@pytest.fixture
def upstream_block(fake_upstream) -> Callable[..., Block]:
    """make(org, block_id, scenario) -> an `openai` block on the fake upstream (tests/support/fake_upstream.py)."""

    def make(organization, block_id: str, scenario: str = "ok", **fields) -> Block:
        return BlockFactory(organization=organization, block_id=block_id, name=block_id, backend_type="openai",
                            backend_config={"base_url": fake_upstream.base_url(scenario)}, **fields)

    return make


def wait_for(predicate: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def wait_run(run_id: int, states: tuple[str, ...] = WorkflowRun.FINISHED, timeout: float = 15.0) -> WorkflowRun:
    return wait_for(lambda: WorkflowRun.objects.filter(pk=run_id, state__in=states).first(), timeout,
                    what=f"run {run_id} to reach {states}")


def wait_node(run_id: int, node_id: str, state: str, timeout: float = 15.0) -> NodeRun:
    return wait_for(lambda: NodeRun.objects.filter(run_id=run_id, node_id=node_id, state=state).first(), timeout,
                    what=f"node {node_id} to be {state}")


def nodes(run_id: int) -> dict[str, NodeRun]:
    return {n.node_id: n for n in NodeRun.objects.filter(run_id=run_id)}


def approval_of(run_id: int, node_id: str) -> Approval:
    return Approval.objects.get(run_id=run_id, node_id=node_id)


def publish(party, document: dict[str, Any]) -> int:
    response = party.client().post("/api/workflows", document, format="json")
    assert response.status_code in (200, 201), response.json()
    return response.json()["data"]["id"]


def start(party, workflow_id: int, input: dict[str, Any] | None = None) -> int:  # noqa: A002
    response = party.client().post(f"/api/workflows/{workflow_id}/runs", {"input": input or {}}, format="json")
    assert response.status_code == 201, response.json()
    return response.json()["data"]["id"]
