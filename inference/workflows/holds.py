"""A chat request held for a person's decision: a policy's `approval_required` (registry/tenancy) on
the block or the organization. The hold is an `Approval` row like a workflow's approval node (no run,
its `request_id` set): the same decision endpoint, the same first-decision-wins UPDATE, the same
deadlines fired by the sweeper.

The waiting request holds no database connection and no worker: its coroutine sleeps and reads the
row's state (one indexed query, on a database thread for a moment) every GATEWAY_APPROVAL_POLL_S at
most, starting faster so a quick decision is seen quickly. Past the deadline the waiter fires it
itself with the sweeper's conditional UPDATE, so a deployment without beat never waits for ever.
A client that leaves cancels its approval (pending -> cancelled), so nobody decides a dead request.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from inference.gateway.errors import OpenAIError
from inference.gateway.pipeline import ChatCall
from inference.workflows import executor, services
from inference.workflows.models import Approval
from registry import jsonsafe
from registry.asyncdb import in_db_thread
from registry.models import Organization
from registry.principal import Principal

REQUEST_NODE = "request"  # Approval.node_id of a held request (it has no run)
FIRST_POLL_S = 0.05

# What GET /v1/requests/<id> says, from the approval's state and decision.
AWAITING, APPROVED, REJECTED, EXPIRED, CANCELLED = "awaiting_approval", "approved", "rejected", "expired", "cancelled"
STATUSES = (AWAITING, APPROVED, REJECTED, EXPIRED, CANCELLED)


def request_status(approval: Approval) -> str:
    if approval.state == Approval.PENDING:
        return AWAITING
    if approval.state == Approval.APPROVED:
        return APPROVED
    if approval.state == Approval.CANCELLED:
        return CANCELLED
    return EXPIRED if approval.decision.startswith("timeout") else REJECTED


def request_dict(approval: Approval) -> dict[str, Any]:
    """The /v1 view of a held request (GET /v1/requests/<id>, the streams' and WebSocket's wait frames)."""
    return {"id": approval.request_id, "object": "request", "status": request_status(approval),
            "model": (approval.review or {}).get("model"),
            "created": int(approval.created_at.timestamp()) if approval.created_at else None,
            "approval": {"id": approval.pk, "approvers": approval.approvers,
                         "due_at": int(approval.due_at.timestamp()) if approval.due_at else None,
                         "decision": approval.decision or None,
                         "decided_by": approval.decided_by.get_username() if approval.decided_by_id else None,
                         "decided_at": int(approval.decided_at.timestamp()) if approval.decided_at else None,
                         "comment": approval.comment or None}}


def _review(call: ChatCall) -> dict[str, Any]:
    """What the approvers see: the request as the block would get it."""
    request = call.chat.request
    params = {name: getattr(request, name) for name in ("max_tokens", "temperature", "top_p", "stop", "seed")
              if getattr(request, name) is not None}
    shown = {"prompt": request.prompt} if call.text else {"messages": request.messages}
    return {"model": call.model_name, **shown, "params": params, "stream": call.stream_requested}


def request_hold_create(*, principal: Principal, request_id: str, rule: dict[str, Any],
                        review: dict[str, Any]) -> Approval:
    now = timezone.now()
    approval = Approval.objects.create(
        organization=principal.organization, run=None, node_id=REQUEST_NODE, request_id=request_id,
        requested_by=services.person_of(principal), requested_by_key=principal.api_key,
        approvers=rule["approvers"], deadline_s=rule["deadline_s"], on_timeout="reject", review=review,
        reached_at=now, due_at=now + timedelta(seconds=rule["deadline_s"]))
    if settings.WORKFLOW_EXECUTOR != "celery":
        executor.start_sweeper(services.workflows_sweep)  # the embedded default's deadlines (beat elsewhere)
    return Approval.objects.select_related("decided_by").get(pk=approval.pk)


def request_hold_read(approval_id: int) -> Approval:
    """The hold now; past its deadline and still pending, the deadline fires first (the sweeper's UPDATE)."""
    approval = Approval.objects.select_related("decided_by").get(pk=approval_id)
    if approval.state == Approval.PENDING and approval.due_at is not None and approval.due_at <= timezone.now():
        services.approval_deadline_fire(approval=approval)
        approval = Approval.objects.select_related("decided_by").get(pk=approval_id)
    return approval


def request_hold_cancel(approval_id: int) -> bool:
    return bool(Approval.objects.filter(pk=approval_id, state=Approval.PENDING)
                .update(state=Approval.CANCELLED, decided_at=timezone.now()))


def request_hold_get(*, organization: Organization, request_id: str) -> Approval | None:
    return (Approval.objects.filter(organization=organization, request_id=request_id)
            .exclude(request_id="").select_related("decided_by").first())


_acreate = in_db_thread(request_hold_create)
_aread = in_db_thread(request_hold_read)
_acancel = in_db_thread(request_hold_cancel)


def _refusal(approval: Approval) -> OpenAIError:
    status = request_status(approval)
    if status == EXPIRED:
        return OpenAIError(403, f"Nobody approved request {approval.request_id} within its {approval.deadline_s} s "
                                "deadline (policy approval_required); it was not run.", code="approval_expired")
    if status == CANCELLED:
        return OpenAIError(403, f"Request {approval.request_id} was withdrawn before a decision; it was not run.",
                           code="approval_cancelled")
    who = approval.decided_by.get_username() if approval.decided_by_id else "an API key"
    return OpenAIError(403, f"Request {approval.request_id} was rejected by {who}"
                            + (f": {approval.comment}" if approval.comment else "") + "; it was not run.",
                       code="approval_rejected")


def _refuse_unstorable(review: dict[str, Any]) -> None:
    """400 before the hold is written: its review is stored as jsonb, which cannot hold a NUL character
    (PostgreSQL raises DataError, a 500), and a block may take one that no approver could be shown."""
    try:
        jsonsafe.check_value(review, refuse_nul=True)
    except jsonsafe.UnsafeJSON as exc:
        raise OpenAIError(400, f"This model's requests wait for a person's approval and are kept for them: "
                               f"{exc.message}.", param=exc.path, code="invalid_value") from None


async def hold_request(call: ChatCall, *, notify: Callable[[dict[str, Any]], Awaitable[None]] | None = None) -> None:
    """Wait for a person's decision when the call's policy asks for one; return once approved (the call
    may then run), raise a 403 OpenAIError when rejected, expired or withdrawn. `notify` gets the
    request's /v1 view when the wait starts and once decided (the stream's and the socket's frames)."""
    if not call.needs_approval:
        return
    if not call.request_id:  # the WebSocket chat has no x-request-id: the hold needs an id to be looked up by
        call.request_id = call.chat.request.request_id = uuid.uuid4().hex
    review = _review(call)
    try:
        _refuse_unstorable(review)
        approval = await _acreate(principal=call.principal, request_id=call.request_id,
                                  rule=call.policy.approval_required, review=review)
        if notify is not None:
            await notify(request_dict(approval))
        delay = FIRST_POLL_S
        while approval.state == Approval.PENDING:
            await asyncio.sleep(delay)
            delay = min(delay * 2, settings.GATEWAY_APPROVAL_POLL_S)
            approval = await _aread(approval.pk)
    except BaseException:
        # The client left (or the database failed): withdraw the request and give its quota back.
        await asyncio.shield(_withdraw(call, locals().get("approval")))
        raise
    if notify is not None:
        await notify(request_dict(approval))
    if approval.state != Approval.APPROVED:
        await call.admission.release()
        raise _refusal(approval)
    call.approved = True


async def _withdraw(call: ChatCall, approval: Approval | None) -> None:
    try:
        if approval is not None:
            await _acancel(approval.pk)
    finally:
        await call.admission.release()
