"""Approvals: the organization's queue of paused approval nodes and held chat requests (a policy's
`approval_required`, inference/workflows/holds.py: no run; shown by request id, block and the
messages under review, approved or rejected as sent). Live: an SSE feed says when it changed,
static/approvals_live.js has htmx re-fetch it. One approval's page with its payload, an edit box checked against the node's JSON schema and approve / reject with a
comment, and the history of decisions. Deciding goes through inference.workflows.services
(approval_decide): the first decision wins and a later one is told who decided first (409)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

from django.contrib.auth.decorators import login_required
from django.db.models import Count, Max, Q
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_http_methods

from inference.workflows import selectors, services
from inference.workflows.models import Approval
from registry import jsonsafe
from registry.asyncdb import in_db_thread
from registry.models import Organization
from webapp.dashboard.access import dashboard_principal, require_member

# The queue's fallback poll, for a browser without EventSource (the feed tells the others at once).
POLL_S = 10
# How often the feed looks at the queue, and how long one feed lasts: the browser's EventSource
# reconnects after it, which checks the session and membership again.
FEED_CHECK_S = 1.0
FEED_LIFETIME_S = 300.0
FEED_KEEPALIVE_S = 15.0
HISTORY_SIZE = 50
MAX_EDIT_CHARS = 200_000


def _approvers_text(approvers: dict) -> str:
    parts = [f"any {approvers['role']}"] if approvers.get("role") else []
    parts += [", ".join(approvers.get("users") or [])] if approvers.get("users") else []
    return " or ".join(parts) or "nobody"


def _pretty(value) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


def _shown_text(content) -> str:
    """A message's content as the approver reads it: a string as it is, parts (text, images) as JSON."""
    return content if isinstance(content, str) else _pretty(content)


def _held_messages(review: dict | None) -> list[dict[str, str]]:
    """What a held chat request asks the block (inference/workflows/holds.py's review): its messages,
    or a completion's prompt, one entry each."""
    review = review or {}
    if "prompt" in review:
        return [{"role": "prompt", "content": _shown_text(review["prompt"])}]
    return [{"role": str(m.get("role", "")) if isinstance(m, dict) else "",
             "content": _shown_text(m.get("content", "") if isinstance(m, dict) else m)}
            for m in review.get("messages") or []]


def _item(approval: Approval, principal) -> dict:
    # A held chat request (holds.py) has no run: it is shown by its request id and block instead.
    held = bool(approval.request_id)
    return {"approval": approval, "who": _approvers_text(approval.approvers or {}),
            "may_decide": services.may_decide(approval=approval, principal=principal),
            "held": held, "block": (approval.review or {}).get("model", "") if held else "",
            "workflow": approval.run.version.workflow.name if approval.run_id else ""}


@login_required
def approvals(request: HttpRequest) -> HttpResponse:
    org = require_member(request).organization
    principal = dashboard_principal(request)
    pending = (selectors.approvals_of(organization=org, state=Approval.PENDING)
               .filter(reached_at__isnull=False).order_by("due_at", "reached_at", "pk"))
    context = {"org": org, "queue": [_item(a, principal) for a in pending[:200]], "poll_s": POLL_S,
               "now": timezone.now()}
    if request.headers.get("HX-Request"):
        return render(request, "dashboard/approvals/queue.html", context)
    history = (selectors.approvals_of(organization=org).exclude(state=Approval.PENDING)
               .filter(decided_at__isnull=False).order_by("-decided_at", "-pk")[:HISTORY_SIZE])
    return render(request, "dashboard/approvals/list.html", context | {"history": history})


@login_required
@require_http_methods(["GET", "POST"])
def approval_detail(request: HttpRequest, pk: int) -> HttpResponse:
    org = require_member(request).organization
    principal = dashboard_principal(request)
    approval = selectors.approval_get(organization=org, pk=pk)
    if approval is None:
        raise Http404("No such approval.")
    errors: list[str] = []
    status = 200
    edited = request.POST.get("output", "") if request.method == "POST" else _pretty(approval.review)
    comment = request.POST.get("comment", "") if request.method == "POST" else ""
    if request.method == "POST":
        decision = request.POST.get("decision", "")
        output = None
        if decision == "edit":
            try:
                if len(edited) > MAX_EDIT_CHARS:
                    raise ValueError(f"longer than {MAX_EDIT_CHARS} characters")
                # The API's decoder: no NUL (PostgreSQL cannot store it), no absurd nesting.
                output = jsonsafe.loads(edited, refuse_nul=True)
            except jsonsafe.UnsafeJSON as exc:
                errors, status = [f"output: {exc.message}"], 400
            except ValueError as exc:
                errors, status = [f"output: not JSON ({exc})"], 400
        if jsonsafe.has_nul(comment):
            errors, status = [*errors, "comment: NUL characters are not allowed"], 400
        if not errors:
            try:
                services.approval_decide(approval=approval, principal=principal, decision=decision,
                                         output=output, comment=comment[:5000])
            except services.WorkflowError as exc:
                errors, status = exc.errors, exc.status
                approval.refresh_from_db()
            else:
                return redirect("dashboard-approval", pk=approval.pk)
    return render(request, "dashboard/approvals/detail.html", {
        "org": org, **_item(approval, principal), "errors": errors, "edited": edited, "comment": comment,
        "review": _pretty(approval.review), "schema": _pretty(approval.schema) if approval.schema else "",
        "diff": approval.diff, "output": _pretty(approval.output) if approval.output is not None else "",
        "conflict": status == 409,
        "messages": _held_messages(approval.review) if approval.request_id else [],
        "params": _pretty((approval.review or {}).get("params") or {}) if approval.request_id else "",
    }, status=status)


def _queue_stamp(organization_pk: int) -> str:
    """Changes whenever an approval of the organization arrives, is decided or escalates."""
    stamp = Approval.objects.filter(organization_id=organization_pk).aggregate(
        n=Count("pk"), pending=Count("pk", filter=Q(state=Approval.PENDING, reached_at__isnull=False)),
        reached=Max("reached_at"), decided=Max("decided_at"), due=Max("due_at"))
    return json.dumps(stamp, default=str, sort_keys=True)


def _feed_organization(request: HttpRequest) -> Organization:
    return require_member(request).organization


async def _queue_changes(organization_pk: int) -> AsyncIterator[bytes]:
    read = in_db_thread(_queue_stamp)
    # The queue as the page was drawn (near enough): what changes after this is news.
    last = await read(organization_pk)
    yield b"retry: 2000\n\n"
    started = sent = time.monotonic()
    while time.monotonic() - started < FEED_LIFETIME_S:
        await asyncio.sleep(FEED_CHECK_S)
        stamp = await read(organization_pk)
        if stamp != last:
            last = stamp
            yield b"event: queue\ndata: changed\n\n"
            sent = time.monotonic()
        elif time.monotonic() - sent >= FEED_KEEPALIVE_S:
            yield b": keepalive\n\n"
            sent = time.monotonic()


@login_required
async def approvals_feed(request: HttpRequest) -> StreamingHttpResponse:
    """SSE: one `queue` event each time the organization's approval queue changes."""
    organization = await in_db_thread(_feed_organization)(request)
    response = StreamingHttpResponse(_queue_changes(organization.pk), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response
