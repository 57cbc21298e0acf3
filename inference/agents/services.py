"""Writes of agents and runs, and a run's execution (on the in-process pool in the embedded default, a
Celery task otherwise: the same WORKFLOW_EXECUTOR setting as workflows).

A run acts for whoever started it: its model calls go through the gateway's pipeline with their
principal (the key's allowed models, quotas and policy apply). A stop is a flag on the row that the
executing run polls, so it works whichever process runs it; the run's in-flight model calls are then
cancelled (their HTTP streams closed) and the run ends `stopped`.

A running run holds a lease its executor renews every WORKFLOW_HEARTBEAT_S (the workflow nodes' lease
and settings). A lease that lapsed means the executor died (a worker crash, a hard time limit, a restart):
the sweeper (agent_runs_sweep: in beat's `workflows.sweep` and the workflows_sweeper command, and on the
embedded default's sweeper thread) fails the run, and a stop finishes it at once. A run is not run again: its tools may have acted already. What a run records has its NUL
characters stripped (as the request log does): PostgreSQL's text and jsonb cannot hold them.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from datetime import datetime, timedelta
from typing import Any

from celery import current_app
from django.conf import settings
from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from inference.agents.abort import AbortSignal, AgentAborted
from inference.agents.agent import AgentConfigError, AgentError, AgentEvent
from inference.agents.ai import AIError
from inference.agents.gateway_ai import GatewayAI
from inference.agents.models import AgentDefinition, AgentRun, AgentRunEvent
from inference.agents.server import build_agent, check_definition, check_options
from inference.workers.loop import run_on_worker_loop
from inference.workflows import executor
from registry.asyncdb import in_db_thread
from registry.jsonsafe import without_nul
from registry.principal import Principal

log = logging.getLogger(__name__)
RUN_TASK = "agents.run"
# Partial outputs are merged into one `delta` event per this many seconds (a row per token would
# make the feed's reads and the table grow with every token).
DELTA_FLUSH_S = 0.2
STOP_POLL_S = 0.2
LEASE_LAPSED = "its executor stopped renewing its lease (a worker crash, a hard time limit or a restart)"
FINISHED_ELSEWHERE = "the run was finished elsewhere"


class AgentRefused(Exception):
    """A definition or a run the caller may not have: `status` 404 (a reference not found), 409, 422."""

    def __init__(self, errors: list[str], status: int = 422):
        super().__init__("; ".join(errors))
        self.errors = errors
        self.status = status


def person_of(principal: Principal):
    if principal.user is not None and getattr(principal.user, "pk", None) is not None:
        return principal.user
    return principal.api_key.created_by if principal.api_key is not None else None


def _checked(*, organization, data: dict[str, Any], name: str) -> None:
    errors, missing = check_definition(organization=organization, data=data, name=name)
    if errors:
        raise AgentRefused(errors + missing, 422)
    if missing:
        raise AgentRefused(missing, 404)


def agent_create(*, principal: Principal, data: dict[str, Any]) -> AgentDefinition:
    organization = principal.organization
    _checked(organization=organization, data=data, name=data["name"])
    with transaction.atomic():
        if AgentDefinition.objects.select_for_update().filter(organization=organization, name=data["name"]).exists():
            raise AgentRefused([f"an agent named '{data['name']}' exists; PUT /api/agents/{data['name']} changes it"],
                               409)
        return AgentDefinition.objects.create(
            organization=organization, name=data["name"], description=data["description"],
            definition=data.get("definition") or "", signature=data["signature"], model=data["model"],
            options=data.get("options") or {}, tools=data.get("tools") or [], rlm=data.get("rlm"),
            actor_options=data.get("actor_options") or {}, responder_options=data.get("responder_options") or {},
            created_by=person_of(principal))


def agent_update(*, agent: AgentDefinition, data: dict[str, Any]) -> AgentDefinition:
    _checked(organization=agent.organization, data=data, name=agent.name)
    for field in ("description", "signature", "model"):
        setattr(agent, field, data[field])
    agent.definition = data.get("definition") or ""
    agent.options = data.get("options") or {}
    agent.tools = data.get("tools") or []
    agent.rlm = data.get("rlm")
    agent.actor_options = data.get("actor_options") or {}
    agent.responder_options = data.get("responder_options") or {}
    agent.save()
    return agent


def agent_delete(*, agent: AgentDefinition) -> None:
    users = [d.name for d in AgentDefinition.objects.filter(organization=agent.organization).exclude(pk=agent.pk)
             if any(t.get("type") == "agent" and t.get("agent") == agent.name for t in d.tools or [])]
    if users:
        raise AgentRefused([f"the agents {', '.join(users)} use '{agent.name}' as a tool"], 409)
    agent.delete()


class AgentCallFailed(Exception):
    """An agent called from elsewhere (a workflow node) could not answer: its message says why."""


@in_db_thread
def _built(principal: Principal, name: str, model: str | None, usage: dict[str, int]):
    definition = AgentDefinition.objects.filter(organization=principal.organization, name=name).first()
    if definition is None:
        raise AgentCallFailed(f"no agent '{name}' in this organization")
    return build_agent(definition, principal=principal, ai_for=lambda m: GatewayAI(m, principal=principal),
                       usage=usage, model=model)


async def agent_call(*, principal: Principal, name: str, values: Any, model: str | None = None) -> dict[str, Any]:
    """One stored agent's output for `values`, its model calls made as `principal` (a workflow's agent node)."""
    usage: dict[str, int] = {}
    try:
        live = await _built(principal, name, model, usage)
        return await live.forward(None, values if isinstance(values, dict) else {}, _usage=usage)
    except (AgentError, AIError) as exc:
        raise AgentCallFailed(str(exc)) from None


# -- runs ---------------------------------------------------------------------------------------------

def agent_run_start(*, agent: AgentDefinition, principal: Principal, input: dict[str, Any],  # noqa: A002
                    model: str | None = None, options: dict[str, Any] | None = None) -> AgentRun:
    errors = check_options(options or {})
    if errors:
        raise AgentRefused(errors, 422)
    try:
        live = build_agent(agent, principal=principal, ai_for=lambda m: GatewayAI(m, principal=principal), usage={},
                           model=model)
        live.check_inputs(input)
    except AgentConfigError as exc:
        raise AgentRefused([str(exc)], 422) from None
    run = AgentRun.objects.create(
        organization=principal.organization, agent=agent, model=model or agent.model, input=input,
        options=options or {}, created_by=person_of(principal), api_key=principal.api_key,
        via_key=principal.api_key is not None, dev_mode=principal.dev_mode)
    transaction.on_commit(lambda: dispatch(run.pk))
    return run


def dispatch(run_id: uuid.UUID) -> None:
    if settings.WORKFLOW_EXECUTOR == "celery":
        current_app.send_task(RUN_TASK, args=[str(run_id)], queue=settings.WORKFLOW_QUEUE)  # by name: tasks.py imports us
    else:
        executor.start_sweeper(agent_runs_sweep)  # the embedded default's sweeper (beat elsewhere)
        executor.submit(agent_run_execute, run_id=str(run_id))


def agent_run_stop(*, run: AgentRun) -> bool:
    """Ask a run to stop: a queued one, or a running one whose executor died (its lease lapsed), is stopped
    at once; a live one at its next poll. False when it finished."""
    if AgentRun.objects.filter(pk=run.pk, state=AgentRun.QUEUED).update(
            state=AgentRun.STOPPED, stop_requested=True, finished_at=timezone.now(), error="stopped before it started"):
        _event_write(run.pk, [(1, "run.finished", {"state": AgentRun.STOPPED, "error": "stopped before it started"})])
        return True
    if _lapsed_finish(run.pk, AgentRun.STOPPED, f"stopped; {LEASE_LAPSED}", now=timezone.now(), stop_requested=True):
        return True
    return bool(AgentRun.objects.filter(pk=run.pk, state=AgentRun.RUNNING).update(stop_requested=True))


def _lapsed(now: datetime) -> Q:
    """Running runs whose executor is gone: the lease ran out, or (claimed before runs had leases) the run
    is older than the hard task time limit, past which no executor still has it."""
    return Q(state=AgentRun.RUNNING) & (
        Q(lease_until__lt=now)
        | Q(lease_until__isnull=True, started_at__lt=now - timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT)))


def _run_finish(rows, *, run_id: uuid.UUID, state: str, output: Any = None, error: str = "",
                usage: dict[str, int] | None = None, **values: Any) -> bool:
    """Finish a run if `rows` still selects it (a conditional UPDATE: whoever finishes it first wins, the
    executor, a stop or the sweeper), with its run.finished event in the same commit."""
    output, error, usage = without_nul(output), without_nul(error), without_nul(usage or {})
    with transaction.atomic():
        if not rows.update(state=state, output=output, error=error, usage=usage, finished_at=timezone.now(),
                           lease_until=None, cost_tokens=int(usage.get("total_tokens") or 0), **values):
            return False
        last = AgentRunEvent.objects.filter(run_id=run_id).order_by("-seq").values_list("seq", flat=True).first()
        _event_write(run_id, [((last or 0) + 1, "run.finished",
                               {"state": state, "output": output, "error": error, "usage": usage})])
    return True


def _lapsed_finish(run_id: uuid.UUID, state: str, error: str, *, now: datetime, **values: Any) -> bool:
    # Its steps and tool calls as its events recorded them (its token usage died with its executor).
    counts = dict(AgentRunEvent.objects.filter(run_id=run_id, kind__in=("step", "tool_call")).values("kind")
                  .annotate(n=Count("pk")).values_list("kind", "n"))
    return _run_finish(AgentRun.objects.filter(_lapsed(now), pk=run_id), run_id=run_id, state=state, error=error,
                       steps=counts.get("step", 0), tool_calls=counts.get("tool_call", 0), **values)


def agent_run_expire(*, run_id: uuid.UUID, now: datetime | None = None) -> bool:
    """Fail a running run whose executor died (its lease lapsed); False when it is live or finished."""
    return _lapsed_finish(run_id, AgentRun.FAILED, LEASE_LAPSED, now=now or timezone.now())


def agent_runs_sweep(*, now: datetime | None = None, batch: int = 500) -> dict[str, int]:
    """Fail every run whose executor died. Safe to run anywhere, any number of times, concurrently."""
    now = now or timezone.now()
    stale = list(AgentRun.objects.filter(_lapsed(now)).values_list("pk", flat=True)[:batch])
    return {"agent_runs_failed": sum(agent_run_expire(run_id=pk, now=now) for pk in stale)}


def _principal(run: AgentRun) -> Principal:
    if run.via_key and (run.api_key is None or not run.api_key.is_usable(timezone.now())):
        raise AgentConfigError("the API key that started this run was revoked, expired or deleted")
    return Principal(organization=run.organization, api_key=run.api_key,
                     user=None if run.via_key else run.created_by, dev_mode=run.dev_mode)


def _event_write(run_id: uuid.UUID, events: list[tuple[int, str, dict[str, Any]]]) -> None:
    # A tool's result or a model's answer may hold NUL (an http_request body): stripped, not refused.
    AgentRunEvent.objects.bulk_create([AgentRunEvent(run_id=run_id, seq=seq, kind=kind, data=without_nul(data))
                                       for seq, kind, data in events])


_aevent_write = in_db_thread(_event_write)


@in_db_thread
def _stop_requested(run_id: uuid.UUID) -> bool:
    return AgentRun.objects.filter(pk=run_id, stop_requested=True).exists()


@in_db_thread
def _renew(run_id: uuid.UUID) -> bool:
    """Extend the run's lease; False when it is no longer running (the sweeper or a stop finished it)."""
    return bool(AgentRun.objects.filter(pk=run_id, state=AgentRun.RUNNING)
                .update(lease_until=timezone.now() + timedelta(seconds=settings.WORKFLOW_LEASE_S)))


class _Recorder:
    """A run's events as rows, numbered in order (one writer: the run); deltas merged per DELTA_FLUSH_S."""

    def __init__(self, run_id: uuid.UUID, first_seq: int):
        self.run_id = run_id
        self.seq = first_seq
        self.pending: list[tuple[int, str, dict[str, Any]]] = []
        self.delta: dict[str, Any] | None = None
        self.flushed = time.monotonic()
        self.steps = 0
        self.tool_calls = 0

    def _take_delta(self) -> None:
        if self.delta is not None:
            self.seq += 1
            self.pending.append((self.seq, "delta", self.delta))
            self.delta = None

    async def add(self, event: AgentEvent) -> None:
        if event.type == "delta":
            if self.delta is None:
                self.delta = {"delta": {}, "values": {}}
            for name, piece in event.data["delta"].items():
                self.delta["delta"][name] = self.delta["delta"].get(name, "") + piece
            self.delta["values"] = event.data["values"]
            if time.monotonic() - self.flushed >= DELTA_FLUSH_S:
                await self.flush()
            return
        self._take_delta()
        if event.type == "step":
            self.steps += 1
        elif event.type == "tool_call":
            self.tool_calls += 1
        if event.type != "done":
            self.seq += 1
            self.pending.append((self.seq, event.type, event.data))
        await self.flush()

    async def flush(self) -> None:
        self._take_delta()
        if self.pending:
            batch, self.pending = self.pending, []
            await _aevent_write(self.run_id, batch)
        self.flushed = time.monotonic()


async def _watch(run_id: uuid.UUID, signal: AbortSignal) -> None:
    """Poll the stop flag every STOP_POLL_S and renew the lease every WORKFLOW_HEARTBEAT_S; a run that
    someone else finished meanwhile (its lease had lapsed) is aborted too."""
    renewed = time.monotonic()
    while not signal.aborted:
        await asyncio.sleep(STOP_POLL_S)
        if time.monotonic() - renewed >= settings.WORKFLOW_HEARTBEAT_S:
            renewed = time.monotonic()
            if not await _renew(run_id):
                signal.abort(FINISHED_ELSEWHERE)
                return
        if await _stop_requested(run_id):
            signal.abort("the run was stopped")


async def _drive(run: AgentRun, principal: Principal) -> tuple[str, Any, str, dict[str, int], _Recorder]:
    """(state, output, error, usage, recorder) of one run, its events recorded as they happen."""
    usage: dict[str, int] = {}
    recorder = _Recorder(run.pk, 1)
    signal = AbortSignal()
    watcher = asyncio.ensure_future(_watch(run.pk, signal))
    try:
        live = await in_db_thread(build_agent)(run.agent, principal=principal,
                                               ai_for=lambda m: GatewayAI(m, principal=principal),
                                               usage=usage, model=run.model)
        async for event in live.events(None, run.input, abort=signal, stream=True, _usage=usage, **run.options):
            await recorder.add(event)
            if event.type == "done":
                return AgentRun.SUCCEEDED, event.data["output"], "", usage, recorder
        return AgentRun.FAILED, None, "the run ended without an output", usage, recorder
    except AgentAborted as exc:
        return AgentRun.STOPPED, None, exc.reason, usage, recorder
    except (AgentError, AIError) as exc:
        return AgentRun.FAILED, None, str(exc), usage, recorder
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
        if signal.reason != FINISHED_ELSEWHERE:  # else its run.finished is written: nothing comes after it
            await recorder.flush()


def agent_run_execute(*, run_id: str) -> str:
    """Claim a queued run and run it to its end. Returns the state it ended in ("not-claimed" when another
    executor has it, or it was stopped before it started)."""
    with transaction.atomic():
        now = timezone.now()
        if not AgentRun.objects.filter(pk=run_id, state=AgentRun.QUEUED).update(
                state=AgentRun.RUNNING, started_at=now, lease_until=now + timedelta(seconds=settings.WORKFLOW_LEASE_S)):
            return "not-claimed"
        run = AgentRun.objects.select_related("agent", "organization", "api_key", "created_by").get(pk=run_id)
        _event_write(run.pk, [(1, "run.started", {"agent": run.agent.name, "model": run.model})])
    usage: dict[str, int] = {}
    steps = tool_calls = 0
    try:
        principal = _principal(run)
        state, output, error, usage, recorder = run_on_worker_loop(
            _drive(run, principal), timeout=settings.CELERY_TASK_SOFT_TIME_LIMIT)
        steps, tool_calls = recorder.steps, recorder.tool_calls
    except AgentConfigError as exc:
        state, output, error = AgentRun.FAILED, None, str(exc)
    except TimeoutError:
        state, output, error = AgentRun.FAILED, None, "the run went past the task time limit"
    except Exception as exc:  # an unexpected failure still ends the run, never leaves it running
        log.exception("agent run %s failed", run_id)
        state, output, error = AgentRun.FAILED, None, f"internal error: {type(exc).__name__}"
    if not _run_finish(AgentRun.objects.filter(pk=run.pk, state=AgentRun.RUNNING), run_id=run.pk, state=state,
                       output=output, error=error, usage=usage, steps=steps, tool_calls=tool_calls):
        # The sweeper or a stop finished it first (this executor's lease had lapsed): theirs stands.
        return AgentRun.objects.filter(pk=run.pk).values_list("state", flat=True).first() or "deleted"
    return state

