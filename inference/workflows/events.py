"""Run events: the steps of a run as rows, for the live feed (SSE and WebSocket) and for resuming it.

Each event takes the next number of its run (1, 2, 3...) from the run's counter, with an UPDATE whose
row lock is held until the writer's transaction ends: a second writer waits for the first to commit and
then takes the next number. So number N+1 can only be written once N is visible, and a reader that saw N
and asks for what follows misses nothing, whatever the commit order of concurrent nodes. A client
resumes with the last number it saw (SSE's Last-Event-ID). Two statements, no retries: the (run, seq)
unique constraint stays as the safety net.

Readers poll (selectors.events_after) rather than subscribe: the rows are the truth in the embedded default
(SQLite, no Redis) and in production alike, and one indexed query per open feed every
WORKFLOW_EVENTS_POLL_S is cheap next to the model calls a run makes.
"""

from __future__ import annotations

from typing import Any

from django.db import connection, transaction

from inference.workflows.models import RunEvent, WorkflowRun

RUN_STARTED, RUN_FINISHED = "run.started", "run.finished"
NODE_STARTED, NODE_SUCCEEDED, NODE_FAILED = "node.started", "node.succeeded", "node.failed"
NODE_CANCELLED, NODE_SKIPPED, NODE_WAITING, NODE_REQUEUED = "node.cancelled", "node.skipped", "node.waiting", \
    "node.requeued"
APPROVAL_ESCALATED = "approval.escalated"


def run_event_record(*, run_id: int, kind: str, node_id: str = "", data: dict[str, Any] | None = None) -> int:
    """Append an event to a run; returns its number."""
    # The number and its row in one commit: the caller's transaction, else one of their own. No savepoint
    # (two more round trips): nothing here is retried.
    with transaction.atomic(savepoint=False):
        with connection.cursor() as cursor:
            # RETURNING: PostgreSQL, and SQLite since 3.35 (the embedded default).
            cursor.execute(f"UPDATE {WorkflowRun._meta.db_table} SET event_seq = event_seq + 1 WHERE id = %s "
                           "RETURNING event_seq", [run_id])
            seq = cursor.fetchone()[0]
        RunEvent.objects.create(run_id=run_id, seq=seq, kind=kind, node_id=node_id, data=data or {})
    return seq
