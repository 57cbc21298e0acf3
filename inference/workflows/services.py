"""Writes for workflows: publish a version, start a run, execute a node, cancel, decide an approval,
sweep. Every state change is a conditional UPDATE on the old state (the claim), so duplicates and
races change nothing: a node that finished never runs again, and the first decision wins.

A finished node commits its own state before it looks at its children: of two parents finishing at
once, the one that commits last sees both done and starts the child (the child's own pending -> queued
UPDATE lets only one of them start it even when both see it ready).
"""

from __future__ import annotations

import logging
import time
import uuid
from contextvars import ContextVar
from datetime import datetime, timedelta
from typing import Any

from celery import current_app
from django.conf import settings
from django.db import transaction
from django.db.models import DateTimeField, F, Max, Q, Value
from django.db.models.functions import Coalesce
from django.utils import timezone
from jsonschema import Draft202012Validator

from inference.agents.services import agent_runs_sweep
from inference.workers.loop import run_on_worker_loop
from inference.workflows import dsl, events, execution, executor, templates
from inference.workflows import graph as dag
from inference.workflows.models import Approval, NodeRun, Workflow, WorkflowRun, WorkflowVersion
from registry.asyncdb import in_db_thread
from registry.models import Membership
from registry.principal import Principal
from registry.roles import caller_role

log = logging.getLogger(__name__)

RUN_NODE_TASK = "workflows.run_node"


class WorkflowError(Exception):
    """Refused input: `errors` names every problem; `status` is the HTTP status it answers."""

    def __init__(self, errors: list[str] | str, status: int = 400):
        self.errors = [errors] if isinstance(errors, str) else errors
        self.status = status
        super().__init__("; ".join(self.errors))


# Publishing.

def workflow_publish(*, principal: Principal, raw: Any) -> tuple[WorkflowVersion, bool]:
    """Validate a document and store it as the next version of its workflow (by name); the same
    document again is the existing version (created False). A label reused for other content is a 409."""
    try:
        document = dsl.validate(raw, principal=principal)
    except dsl.DocumentError as exc:
        raise WorkflowError(exc.errors, status=422 if exc.parsed else 400) from None
    organization = principal.organization
    user = person_of(principal)
    name, label = str(document["name"]).strip(), str(document["version"]).strip()
    with transaction.atomic():
        workflow, _ = Workflow.objects.get_or_create(organization=organization, name=name,
                                                     defaults={"created_by": user})
        # One publisher at a time per workflow: version numbers are consecutive.
        Workflow.objects.select_for_update().filter(pk=workflow.pk).first()
        existing = workflow.versions.filter(label=label).first()
        if existing is not None:
            if existing.document == document:
                return existing, False
            raise WorkflowError(f"version '{label}' of workflow '{name}' already exists with other content; "
                                "versions never change: give the new document another version", status=409)
        number = (workflow.versions.aggregate(n=Max("number"))["n"] or 0) + 1
        Workflow.objects.filter(pk=workflow.pk).update(description=document.get("description", ""))
        version = WorkflowVersion.objects.create(workflow=workflow, number=number, label=label,
                                                 document=document, created_by=user)
    return version, True


def person_of(principal: Principal):
    if principal.user is not None and getattr(principal.user, "pk", None) is not None:
        return principal.user
    return principal.api_key.created_by if principal.api_key is not None else None


# Starting and running.

def run_start(*, version: WorkflowVersion, principal: Principal, input: Any) -> WorkflowRun:  # noqa: A002
    document = version.document
    errors = dsl.check_input(document, input)
    # The DSL Action Verifier again, for this caller now: blocks may have been unshared since upload,
    # and this key's allowed models may be narrower than the uploader's.
    errors += dsl.reference_errors(document, principal=principal)
    if errors:
        raise WorkflowError(errors)
    graph = dag.build(document["nodes"])
    now = timezone.now()
    with transaction.atomic():
        run = WorkflowRun.objects.create(
            organization=principal.organization, version=version, state=WorkflowRun.RUNNING, input=input,
            created_by=person_of(principal), api_key=principal.api_key, via_key=principal.api_key is not None,
            dev_mode=principal.dev_mode)
        roots = set(graph.roots)
        NodeRun.objects.bulk_create([
            NodeRun(run=run, node_id=n["id"], node_type=n["type"],
                    state=NodeRun.QUEUED if n["id"] in roots else NodeRun.PENDING,
                    queued_at=now if n["id"] in roots else None)
            for n in document["nodes"]])
        Approval.objects.bulk_create([
            Approval(organization=run.organization, run=run, node_id=n["id"], approvers=n["approvers"],
                     deadline_s=dsl.parse_duration(n["deadline"]) if "deadline" in n else None,
                     on_timeout=n.get("on_timeout"), schema=n.get("schema"))
            for n in document["nodes"] if n["type"] == "approval"])
        events.run_event_record(run_id=run.pk, kind=events.RUN_STARTED, data={"version": version.number})
        ids = list(NodeRun.objects.filter(run=run, state=NodeRun.QUEUED).values_list("pk", flat=True))
        transaction.on_commit(lambda: dispatch(ids))
    return run


# Set by node_run_chain for the node it runs: _advance leaves one ready child here instead of sending it
# through the broker, and the same task runs it next (None elsewhere: a decision, the sweeper).
_inline_child: ContextVar[list[int] | None] = ContextVar("workflows_inline_child", default=None)


def node_run_chain(*, node_run_id: int) -> str:
    """The Celery task's work: run the node, then one child its end made ready, in this same task, while
    the task is younger than WORKFLOW_INLINE_BUDGET_S. Sending a ready child through the broker costs a
    publish, the worker's consumer and a thread hand-off (most of a node's scheduling overhead); running it
    here costs nothing but its claim. Its siblings still go through the broker and run in parallel. The
    child stays `pending` until this task claims it (pending -> running, conditional like every claim); if
    this worker dies in between, the sweeper finds a run with ready nodes and nothing in flight and
    advances it, as after any crash between two steps."""
    started = time.monotonic()
    outcome = "not-claimed"
    next_id: int | None = node_run_id
    from_pending = False
    while next_id is not None:
        slot: list[int] | None = [] if (settings.WORKFLOW_INLINE_CHILD and
                                        time.monotonic() - started < settings.WORKFLOW_INLINE_BUDGET_S) else None
        token = _inline_child.set(slot)
        try:
            outcome = node_execute(node_run_id=next_id, from_pending=from_pending)
        finally:
            _inline_child.reset(token)
        next_id, from_pending = (slot[0], True) if slot else (None, False)
    return outcome


def dispatch(node_run_ids: list[int]) -> None:
    """Hand queued nodes to an executor: Celery tasks, or the in-process pool in the embedded default."""
    for node_run_id in node_run_ids:
        if settings.WORKFLOW_EXECUTOR == "celery":
            # By name: the task module imports this one.
            current_app.send_task(RUN_NODE_TASK, args=[node_run_id], queue=settings.WORKFLOW_QUEUE)
        else:
            executor.start_sweeper(workflows_sweep)
            executor.submit(node_run_chain, node_run_id=node_run_id)


def _principal(run: WorkflowRun) -> Principal:
    if run.via_key and (run.api_key is None or not run.api_key.is_usable(timezone.now())):
        raise execution.NodeFailure("the API key that started this run was revoked, expired or deleted")
    return Principal(organization=run.organization, api_key=run.api_key,
                     user=None if run.via_key else run.created_by, dev_mode=run.dev_mode)


def _node_spec(document: dict[str, Any], node_id: str) -> dict[str, Any]:
    return next(n for n in document["nodes"] if n["id"] == node_id)


def _context(run: WorkflowRun, graph: dag.Graph, node_id: str | None) -> dict[str, Any]:
    """Template context: the run's input and every upstream node's output (a skipped one's is null)."""
    upstream = graph.ancestors(node_id) if node_id is not None else set(graph.order)
    rows = NodeRun.objects.filter(run=run, node_id__in=upstream, state__in=NodeRun.DONE)
    return {"input": run.input, "nodes": {r.node_id: {"output": r.output} for r in rows}}


def _parents_outputs(context: dict[str, Any], graph: dag.Graph, node_id: str) -> dict[str, Any]:
    return {p: context["nodes"].get(p, {}).get("output") for p in graph.parents[node_id]}


def node_execute(*, node_run_id: int, from_pending: bool = False) -> str:
    """Claim a queued node (or one whose executor's lease ran out) and run it. Returns what happened;
    a node another executor holds, or that finished, is left alone ("not-claimed"). `from_pending`: the
    caller's own advance found the node ready and left it pending for this claim (node_run_chain)."""
    token = uuid.uuid4().hex
    now = timezone.now()
    claimable = Q(state=NodeRun.QUEUED) | Q(state=NodeRun.RUNNING, lease_until__lt=now)
    if from_pending:
        claimable |= Q(state=NodeRun.PENDING)
    with transaction.atomic():  # the claim and its event: one commit
        claimed = (NodeRun.objects.filter(claimable, pk=node_run_id, run__state=WorkflowRun.RUNNING)
                   .update(state=NodeRun.RUNNING, claim=token, attempts=F("attempts") + 1, started_at=now,
                           queued_at=Coalesce(F("queued_at"), Value(now, output_field=DateTimeField())),
                           lease_until=now + timedelta(seconds=settings.WORKFLOW_LEASE_S), error=""))
        if not claimed:
            return "not-claimed"
        node_run = NodeRun.objects.select_related("run__version", "run__organization", "run__api_key",
                                                  "run__created_by").get(pk=node_run_id)
        events.run_event_record(run_id=node_run.run_id, kind=events.NODE_STARTED, node_id=node_run.node_id,
                                data={"nodeType": node_run.node_type, "attempt": node_run.attempts})
    run = node_run.run
    document = run.version.document
    graph = dag.build(document["nodes"])
    node = _node_spec(document, node_run.node_id)
    try:
        context = _context(run, graph, node["id"])
        parents = _parents_outputs(context, graph, node["id"])
        if node["type"] == "approval":
            return _approval_arrive(node_run, token, node, context, parents)
        if node["type"] == "condition":
            recorded, result = execution.evaluate(node["if"], context)
            node_input, output = {**recorded, "parents": parents}, {"result": result,
                                                                      "branch": "then" if result else "else"}
        else:
            principal = _principal(run)
            work = {"map": execution.run_map, "planner": execution.run_planner,
                    "agent": execution.run_agent}.get(node["type"], execution.run_call)
            node_input, output = run_on_worker_loop(
                execution.watched(work(principal, node, context), lambda: _arenew(node_run_id, token),
                                  settings.WORKFLOW_HEARTBEAT_S),
                timeout=settings.CELERY_TASK_SOFT_TIME_LIMIT)
            node_input = {**node_input, "parents": parents}
    except execution.NodeCancelled:
        _node_finish(run.pk, node["id"], node_run_id, token, state=NodeRun.CANCELLED, error="cancelled")
        return "cancelled"
    except (execution.NodeFailure, templates.TemplateError) as exc:
        return _node_failed(run, node["id"], node_run_id, token, str(exc))
    except TimeoutError:
        return _node_failed(run, node["id"], node_run_id, token, "the node ran past the task time limit")
    if not _node_finish(run.pk, node["id"], node_run_id, token, state=NodeRun.SUCCEEDED, event={"output": output},
                        input=node_input, output=output):
        return "lost-claim"
    _advance(run, graph, document, [node["id"]])
    return "succeeded"


def _renew(node_run_id: int, token: str) -> bool:
    """Extend the lease; False when the run stopped or another executor took the node."""
    return bool(NodeRun.objects.filter(pk=node_run_id, claim=token, state=NodeRun.RUNNING,
                                       run__state=WorkflowRun.RUNNING)
                .update(lease_until=timezone.now() + timedelta(seconds=settings.WORKFLOW_LEASE_S)))


_arenew = in_db_thread(_renew)


def _update_with_event(rows, values: dict[str, Any], *, run_id: int, kind: str, node_id: str = "",
                       data: dict[str, Any] | None = None) -> bool:
    """A conditional UPDATE and, when it changed a row, its event, in one commit: the WAL flush of a
    commit is most of what a small write costs, and it sits between a node's end and its child's start."""
    with transaction.atomic():
        changed = rows.update(**values)
        if changed:
            events.run_event_record(run_id=run_id, kind=kind, node_id=node_id, data=data)
    return bool(changed)


_FINISH_EVENTS = {NodeRun.SUCCEEDED: events.NODE_SUCCEEDED, NodeRun.FAILED: events.NODE_FAILED,
                  NodeRun.CANCELLED: events.NODE_CANCELLED}


def _node_finish(run_id: int, node_id: str, node_run_id: int, token: str, *, state: str,
                 event: dict[str, Any] | None = None, **values: Any) -> bool:
    return _update_with_event(NodeRun.objects.filter(pk=node_run_id, claim=token, state=NodeRun.RUNNING),
                              {"state": state, "finished_at": timezone.now(), "lease_until": None, **values},
                              run_id=run_id, kind=_FINISH_EVENTS[state], node_id=node_id, data=event)


def _node_failed(run: WorkflowRun, node_id: str, node_run_id: int, token: str, error: str) -> str:
    if _node_finish(run.pk, node_id, node_run_id, token, state=NodeRun.FAILED, event={"error": error}, error=error):
        _run_stop(run, WorkflowRun.FAILED, f"node '{node_id}' failed: {error}")
    return "failed"


def _run_stop(run: WorkflowRun, state: str, error: str) -> bool:
    """Fail or cancel a run: what has not started never will; running nodes see it at their next
    heartbeat and close their calls."""
    stopped = WorkflowRun.objects.filter(pk=run.pk, state__in=(WorkflowRun.PENDING, WorkflowRun.RUNNING)) \
        .update(state=state, error=error, finished_at=timezone.now())
    if stopped:
        NodeRun.objects.filter(run=run, state__in=(NodeRun.PENDING, NodeRun.QUEUED, NodeRun.WAITING)) \
            .update(state=NodeRun.CANCELLED, finished_at=timezone.now(), lease_until=None)
        Approval.objects.filter(run=run, state=Approval.PENDING).update(state=Approval.CANCELLED)
        events.run_event_record(run_id=run.pk, kind=events.RUN_FINISHED, data={"state": state, "error": error})
    return bool(stopped)


def _skipped(child: str, graph: dag.Graph, states: dict[str, str], outputs: dict[str, Any]) -> bool:
    if all(states[p] == NodeRun.SKIPPED for p in graph.parents[child]):
        return True
    for condition, branch in graph.branches[child]:
        taken = (outputs.get(condition) or {}).get("branch") if states[condition] == NodeRun.SUCCEEDED else None
        if taken != branch:
            return True
    return False


def _advance(run: WorkflowRun, graph: dag.Graph, document: dict[str, Any], finished: list[str]) -> None:
    """Start (or skip) the children of finished nodes whose parents are all done; finish the run."""
    to_dispatch: list[int] = []
    slot = _inline_child.get()
    conditions = {c for branches in graph.branches.values() for c, _ in branches}
    work = list(finished)
    while work:
        node_id = work.pop()
        children = graph.children[node_id]
        if not children:
            continue
        rows = NodeRun.objects.filter(run=run).values_list("node_id", "state", "output", "pk")
        states = {n: s for n, s, _, _ in rows}
        outputs = {n: o for n, s, o, _ in rows if s == NodeRun.SUCCEEDED and n in conditions}
        pks = {n: pk for n, _, _, pk in rows}
        for child in children:
            if states[child] != NodeRun.PENDING or any(states[p] not in NodeRun.DONE for p in graph.parents[child]):
                continue
            now = timezone.now()
            if _skipped(child, graph, states, outputs):
                if _update_with_event(NodeRun.objects.filter(run=run, node_id=child, state=NodeRun.PENDING),
                                      {"state": NodeRun.SKIPPED, "finished_at": now},
                                      run_id=run.pk, kind=events.NODE_SKIPPED, node_id=child):
                    work.append(child)
                    states[child] = NodeRun.SKIPPED
            elif slot is not None and not slot:
                # This task claims it next, straight from pending (node_run_chain): no queued step, no
                # message. The claim is conditional like any other, so a second parent that queued it
                # meanwhile for the broker starts it no second time.
                slot.append(pks[child])
                states[child] = NodeRun.QUEUED
            elif NodeRun.objects.filter(run=run, node_id=child, state=NodeRun.PENDING) \
                    .update(state=NodeRun.QUEUED, queued_at=now):
                states[child] = NodeRun.QUEUED
                to_dispatch.append(pks[child])
    dispatch(to_dispatch)
    if not to_dispatch and not slot:  # a child just started or queued: the run is not over
        _maybe_finish(run, graph, document)


def _maybe_finish(run: WorkflowRun, graph: dag.Graph, document: dict[str, Any]) -> None:
    if NodeRun.objects.filter(run=run, state__in=NodeRun.ACTIVE).exists():
        return
    context = _context(run, graph, None)
    try:
        if "output" in document:
            output = templates.render(document["output"], context)
        else:
            sinks = {n: context["nodes"][n]["output"] for n in graph.sinks() if n in context["nodes"]}
            output = next(iter(sinks.values())) if len(sinks) == 1 else sinks
    except templates.TemplateError as exc:
        _run_stop(run, WorkflowRun.FAILED, f"output: {exc}")
        return
    _update_with_event(WorkflowRun.objects.filter(pk=run.pk, state=WorkflowRun.RUNNING),
                       {"state": WorkflowRun.SUCCEEDED, "output": output, "finished_at": timezone.now()},
                       run_id=run.pk, kind=events.RUN_FINISHED, data={"state": WorkflowRun.SUCCEEDED, "output": output})


def run_cancel(*, run: WorkflowRun) -> bool:
    """Cancel a run that has not finished; False when it already had."""
    return _run_stop(run, WorkflowRun.CANCELLED, "cancelled")


# Human approval.

def _approval_arrive(node_run: NodeRun, token: str, node: dict[str, Any], context: dict[str, Any],
                     parents: dict[str, Any]) -> str:
    """The run reaches an approval node: pause it durably (rows only), then apply a decision that came
    first. The node waits in state `waiting`; nothing holds a worker or a task."""
    if "review" in node:
        review = templates.render(node["review"], context)
    else:
        review = next(iter(parents.values())) if len(parents) == 1 else parents
    now = timezone.now()
    # One transaction: whoever sees the node waiting also sees the approval reached, with its deadline.
    with transaction.atomic():
        if not _node_finish_waiting(node_run.pk, token, review):
            return "lost-claim"
        approval = Approval.objects.get(run_id=node_run.run_id, node_id=node_run.node_id)
        due = now + timedelta(seconds=approval.deadline_s) if approval.deadline_s else None
        Approval.objects.filter(pk=approval.pk, reached_at__isnull=True) \
            .update(reached_at=now, review=review, due_at=due)
        events.run_event_record(run_id=node_run.run_id, kind=events.NODE_WAITING, node_id=node_run.node_id,
                                data={"approval": approval.pk, "review": review,
                                      "dueAt": due.isoformat() if due else None})
    _approval_apply(approval.pk)
    return "waiting"


def _node_finish_waiting(node_run_id: int, token: str, review: Any) -> bool:
    return bool(NodeRun.objects.filter(pk=node_run_id, claim=token, state=NodeRun.RUNNING)
                .update(state=NodeRun.WAITING, input={"review": review}, lease_until=None))


def _approval_apply(approval_id: int) -> None:
    """Carry a decided approval into its node, once: the node's waiting -> finished UPDATE is the claim."""
    approval = Approval.objects.select_related("run__version").get(pk=approval_id)
    if approval.state not in (Approval.APPROVED, Approval.REJECTED) or approval.reached_at is None:
        return
    if approval.run_id is None:
        return  # a held chat request: its waiting coroutine reads the decision itself (holds.py)
    run = approval.run
    nodes = NodeRun.objects.filter(run=run, node_id=approval.node_id, state=NodeRun.WAITING)
    now = timezone.now()
    if approval.state == Approval.REJECTED:
        who = approval.decided_by.get_username() if approval.decided_by_id else (
            "its deadline" if approval.decision.startswith("timeout") else "an API key")
        error = f"rejected by {who}" + (f": {approval.comment}" if approval.comment else "")
        if _update_with_event(nodes, {"state": NodeRun.FAILED, "error": error, "finished_at": now}, run_id=run.pk,
                              kind=events.NODE_FAILED, node_id=approval.node_id,
                              data={"error": error, "decision": approval.decision}):
            _run_stop(run, WorkflowRun.FAILED, f"approval '{approval.node_id}' {error}")
        return
    output = approval.output if approval.decision in ("edit", "timeout-default") else approval.review
    if approval.decision == "edit" and approval.diff is None:
        Approval.objects.filter(pk=approval.pk).update(diff=json_diff(approval.review, approval.output))
    if _update_with_event(nodes, {"state": NodeRun.SUCCEEDED, "output": output, "finished_at": now}, run_id=run.pk,
                          kind=events.NODE_SUCCEEDED, node_id=approval.node_id,
                          data={"output": output, "decision": approval.decision}):
        document = run.version.document
        _advance(run, dag.build(document["nodes"]), document, [approval.node_id])


def json_diff(old: Any, new: Any, path: str = "") -> list[dict[str, Any]]:
    """What an edit changed, as [{"path": "/a/0", "old": ..., "new": ...}] (JSON-pointer paths)."""
    if isinstance(old, dict) and isinstance(new, dict):
        changes = []
        for key in sorted(set(old) | set(new), key=str):
            where = f"{path}/{key}"
            if key not in new:
                changes.append({"path": where, "old": old[key], "new": None, "op": "remove"})
            elif key not in old:
                changes.append({"path": where, "old": None, "new": new[key], "op": "add"})
            else:
                changes += json_diff(old[key], new[key], where)
        return changes
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [c for i, (a, b) in enumerate(zip(old, new, strict=True)) for c in json_diff(a, b, f"{path}/{i}")]
    return [] if old == new else [{"path": path or "/", "old": old, "new": new, "op": "replace"}]


def may_decide(*, approval: Approval, principal: Principal) -> bool:
    role = caller_role(principal)
    if role is None:
        return False
    approvers = approval.approvers or {}
    person = person_of(principal)
    if person is not None and person.get_username() in (approvers.get("users") or []):
        return True
    wanted = approvers.get("role")
    return wanted == role or (wanted == Membership.MEMBER and role == Membership.OWNER)


DECISIONS = ("approve", "reject", "edit")


def approval_decide(*, approval: Approval, principal: Principal, decision: str, output: Any = None,
                    comment: str = "") -> Approval:
    """Record a decision; the first one wins (409 for any later one). An edit is validated against the
    node's schema and becomes the node's output. A decision before the run reaches the node is kept
    and applied on arrival."""
    if not may_decide(approval=approval, principal=principal):
        raise WorkflowError(f"you are not an approver of '{approval.node_id}' "
                            f"(approvers: {_approvers_text(approval.approvers)})", status=403)
    if decision not in DECISIONS:
        raise WorkflowError(f"decision: one of {', '.join(DECISIONS)}")
    if approval.request_id:
        if decision == "edit":
            raise WorkflowError("a held chat request is approved or rejected as it was sent; it cannot be edited")
        person = person_of(principal)
        if person is not None and person.pk == approval.requested_by_id:
            # Four eyes: the policy asks for someone else's decision.
            raise WorkflowError("you sent this request: someone else among its approvers decides it", status=403)
    if decision == "edit" and approval.schema:
        problems = sorted(Draft202012Validator(approval.schema).iter_errors(output), key=lambda e: list(e.path))
        if problems:
            raise WorkflowError([f"output{''.join(f'[{p!r}]' for p in e.path)}: {e.message}" for e in problems])
    state = Approval.REJECTED if decision == "reject" else Approval.APPROVED
    values: dict[str, Any] = {"state": state, "decision": decision, "comment": comment or "",
                              "decided_by": person_of(principal), "decided_by_key": principal.api_key,
                              "decided_at": timezone.now()}
    if decision == "edit":
        values["output"] = output
        if approval.reached_at is not None:
            values["diff"] = json_diff(approval.review, output)
    if not Approval.objects.filter(pk=approval.pk, state=Approval.PENDING).update(**values):
        approval.refresh_from_db()
        who = approval.decided_by.get_username() if approval.decided_by_id else (approval.decision or "the run")
        raise WorkflowError(f"this approval is already {approval.state} ({who})", status=409)
    _approval_apply(approval.pk)
    approval.refresh_from_db()
    return approval


def _approvers_text(approvers: dict[str, Any]) -> str:
    parts = [f"role {approvers['role']}"] if approvers.get("role") else []
    parts += [", ".join(approvers.get("users") or [])] if approvers.get("users") else []
    return " or ".join(parts)


# The sweeper (Celery beat in production, a thread in the embedded default).

def _approval_timeout(approval: Approval, now: datetime) -> str:
    on_timeout = approval.on_timeout or "reject"
    due = Q(pk=approval.pk, state=Approval.PENDING, due_at__lte=now)
    if isinstance(on_timeout, dict) and "escalate" in on_timeout:
        if not approval.escalated:
            moved = Approval.objects.filter(due, escalated=False).update(
                approvers=on_timeout["escalate"], escalated=True,
                due_at=now + timedelta(seconds=dsl.parse_duration(on_timeout["deadline"]) or 0))
            if not moved:
                return "raced"
            events.run_event_record(run_id=approval.run_id, kind=events.APPROVAL_ESCALATED, node_id=approval.node_id,
                                    data={"approval": approval.pk, "approvers": on_timeout["escalate"]})
            return "escalated"
        on_timeout = on_timeout.get("then", "reject")
    if on_timeout == "approve":
        values = {"state": Approval.APPROVED, "decision": "timeout-approve"}
    elif on_timeout == "reject":
        values = {"state": Approval.REJECTED, "decision": "timeout-reject"}
    else:
        values = {"state": Approval.APPROVED, "decision": "timeout-default", "output": on_timeout["default"]}
    if not Approval.objects.filter(due).update(decided_at=now, **values):
        return "raced"  # a person decided first
    _approval_apply(approval.pk)
    return values["decision"]


def approval_deadline_fire(*, approval: Approval, now: datetime | None = None) -> str:
    """Fire one approval's deadline if it is due (what the sweeper does for each due one); "raced" when
    a decision or another sweep came first."""
    return _approval_timeout(approval, now or timezone.now())


def workflows_sweep(*, now: datetime | None = None, batch: int = 500) -> dict[str, int]:
    """Fire due approval deadlines, give nodes whose executor died to another one, and restart runs an
    executor crash left between two steps. Safe to run anywhere, any number of times, concurrently."""
    now = now or timezone.now()
    counts = {"deadlines": 0, "released": 0, "redispatched": 0, "reconciled": 0}
    for approval in Approval.objects.filter(state=Approval.PENDING, due_at__lte=now)[:batch]:
        if _approval_timeout(approval, now) != "raced":
            counts["deadlines"] += 1
    # A lease that ran out: the executor died (a renewing one never lets it lapse). Claim by the lease.
    stale = list(NodeRun.objects.filter(state=NodeRun.RUNNING, lease_until__lt=now, run__state=WorkflowRun.RUNNING)
                 .values_list("pk", "claim", "run_id", "node_id")[:batch])
    released = []
    for pk, claim, run_id, node_id in stale:
        if NodeRun.objects.filter(pk=pk, claim=claim, state=NodeRun.RUNNING, lease_until__lt=now) \
                .update(state=NodeRun.QUEUED, queued_at=now, claim=""):
            released.append(pk)
            events.run_event_record(run_id=run_id, kind=events.NODE_REQUEUED, node_id=node_id,
                                    data={"reason": "its executor's lease lapsed"})
    counts["released"] = len(released)
    # Queued for longer than a lease with nobody claiming it: its message was lost. The claim makes a
    # duplicate harmless.
    lost = list(NodeRun.objects.filter(state=NodeRun.QUEUED, run__state=WorkflowRun.RUNNING,
                                       queued_at__lt=now - timedelta(seconds=settings.WORKFLOW_LEASE_S))
                .exclude(pk__in=released).values_list("pk", flat=True)[:batch])
    NodeRun.objects.filter(pk__in=lost).update(queued_at=now)
    dispatch(released + lost)
    counts["redispatched"] = len(lost)
    # Runs with nothing in flight but pending nodes (or none left): an advance that never happened.
    in_flight = NodeRun.objects.filter(state__in=(NodeRun.QUEUED, NodeRun.RUNNING, NodeRun.WAITING))
    stuck = (WorkflowRun.objects.filter(state=WorkflowRun.RUNNING, created_at__lt=now - timedelta(seconds=1))
             .exclude(pk__in=in_flight.values("run_id")).select_related("version")[:batch])
    for run in stuck:
        document = run.version.document
        graph = dag.build(document["nodes"])
        done = list(NodeRun.objects.filter(run=run, state__in=NodeRun.DONE).values_list("node_id", flat=True))
        _advance(run, graph, document, done)
        counts["reconciled"] += 1
    return counts


def sweep_all(*, now: datetime | None = None) -> dict[str, int]:
    """Everything the sweeper does, with the counts of each part: the workflows' (workflows_sweep) and
    the agent runs' whose executor died (inference/agents). Celery beat's `workflows.sweep` and the
    `workflows_sweeper` command run this; the embedded thread runs each part as its feature registers it."""
    now = now or timezone.now()
    return {**workflows_sweep(now=now), **agent_runs_sweep(now=now)}


def version_for_run(*, workflow: Workflow, number: int | None) -> WorkflowVersion:
    versions = workflow.versions.all()
    version = versions.filter(number=number).first() if number is not None else versions.order_by("-number").first()
    if version is None:
        raise WorkflowError(f"workflow '{workflow.name}' has no version {number}", status=404)
    return version

