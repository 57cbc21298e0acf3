"""Run events: the steps of a run as rows, for the live feed (SSE and WebSocket) and for resuming it.

Each event takes the next number of its run (1, 2, 3...). The number is MAX + 1 under the
(run, seq) unique constraint: two writers that read the same MAX collide, the second waits on the
first's uncommitted row and retries after it commits. So number N+1 can only be written once N is
visible, and a reader that saw N and asks for what follows misses nothing, whatever the commit order
of concurrent nodes. A client resumes with the last number it saw (SSE's Last-Event-ID).

Readers poll (selectors.events_after) rather than subscribe: the rows are the truth in the embedded default
(SQLite, no Redis) and in production alike, and one indexed query per open feed every
WORKFLOW_EVENTS_POLL_S is cheap next to the model calls a run makes.
"""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Max

from inference.workflows.models import RunEvent

RUN_STARTED, RUN_FINISHED = "run.started", "run.finished"
NODE_STARTED, NODE_SUCCEEDED, NODE_FAILED = "node.started", "node.succeeded", "node.failed"
NODE_CANCELLED, NODE_SKIPPED, NODE_WAITING, NODE_REQUEUED = "node.cancelled", "node.skipped", "node.waiting", \
    "node.requeued"
APPROVAL_ESCALATED = "approval.escalated"

_ATTEMPTS = 50  # parallel nodes of one run finishing together collide a few times at most


def run_event_record(*, run_id: int, kind: str, node_id: str = "", data: dict[str, Any] | None = None) -> int:
    """Append an event to a run; returns its number."""
    for _ in range(_ATTEMPTS):
        seq = (RunEvent.objects.filter(run_id=run_id).aggregate(last=Max("seq"))["last"] or 0) + 1
        try:
            with transaction.atomic():  # a savepoint inside a caller's transaction
                RunEvent.objects.create(run_id=run_id, seq=seq, kind=kind, node_id=node_id, data=data or {})
        except IntegrityError:
            continue  # another writer took this number first
        return seq
    raise RuntimeError(f"could not number an event of run {run_id}")
