"""Registry pages: browse (paginated, with totals), filter with the query language, search by meaning,
one block's page, and the create/edit forms. Reads go through registry.selectors and
registry.similarity, writes through registry.services, as the REST API's do."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import urlencode
from django.views.decorators.http import require_POST

from inference.models import Engine
from inference.selectors import block_metrics, route_decisions
from registry import services
from registry.models import Block, BlockGrant
from registry.query import OPERATORS, VARIABLES, QueryError, compile_node, compile_query
from registry.roles import is_operator
from registry.selectors import block_reference, blocks_visible_to
from registry.similarity.policies import DEFAULT_POLICY, POLICIES
from registry.similarity.search import blocks_similar
from webapp.dashboard.access import dashboard_org, require_member, require_owner
from webapp.dashboard.block_forms import BlockForm
from webapp.dashboard.views import engine_status, render_page

PAGE_SIZE = 50
# The latest `auto` routing decisions a block's page lists (the request log has them all).
ROUTE_DECISIONS_SHOWN = 20
# The variables the filter row offers (the query language takes more, in the JSON box).
FILTER_VARIABLES = ["id", "name", "kind", "description", "tags", "inputProtocols", "outputProtocols",
                    "backend.type", "visibility", "organization", "enabled", "createdAt"]


def _text_search(rows: QuerySet[Block], text: str) -> QuerySet[Block]:
    """Id, name, description or any tag containing `text`, case-insensitive: the query language's LIKE,
    so it is SQL on every database (PostgreSQL and the embedded default's SQLite)."""
    pattern = f"*{text}*"
    node = {"logicalOperator": "OR", "conditions": [
        {"variable": variable, "operator": "LIKE", "value": pattern}
        for variable in ("id", "name", "description", "tags")]}
    return rows.filter(compile_node(node, "q"))


def _typed_value(variable: str, operator: str, value: str) -> Any:
    """The filter row's text as the query language wants it: a comma-separated list for IN / NOT IN,
    true/false for a boolean, the text itself otherwise."""
    if operator in ("IN", "NOT IN"):
        return [v.strip() for v in value.split(",") if v.strip()]
    known = VARIABLES.get(variable)
    if known is not None and known.type == "bool":
        return value.lower() in ("1", "true", "yes", "on")
    return value


def _filter_from(params: Any) -> tuple[Q | None, str | None, str]:
    """(condition, kind, error) from the filter row (variable, operator, value) or the JSON box."""
    raw = params.get("filter", "").strip()
    variable, operator, value = params.get("var", ""), params.get("op", ""), params.get("val", "").strip()
    try:
        if raw:
            payload = json.loads(raw)
            q, kind = compile_query(payload)
            return q, kind, ""
        if variable and value:
            condition = {"variable": variable, "operator": operator or "==",
                         "value": _typed_value(variable, operator, value)}
            return compile_node([condition], "filter"), None, ""
    except json.JSONDecodeError as exc:
        return None, None, f"filter: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})"
    except QueryError as exc:
        return None, None, str(exc)
    return None, None, ""


@login_required
def blocks(request: HttpRequest) -> HttpResponse:
    org = dashboard_org(request)
    text = request.GET.get("q", "").strip()
    kind = request.GET.get("kind", "")
    condition, query_kind, error = _filter_from(request.GET)
    rows = Block.objects.none()
    total_visible = 0
    if org is not None:
        visible = blocks_visible_to(org)
        total_visible = visible.count()
        rows = visible
        if kind in (Block.LLM, Block.OPTIMIZER):
            rows = rows.filter(kind=kind)
        if query_kind:
            rows = rows.filter(kind=query_kind)
        if text:
            rows = _text_search(rows, text)
        if condition is not None:
            rows = rows.filter(condition)
        if error:
            rows = Block.objects.none()
    page = Paginator(rows, PAGE_SIZE).get_page(request.GET.get("page"))
    params = request.GET.copy()
    params.pop("page", None)
    context = {"page": page, "blocks": page.object_list, "q": text, "kind": kind, "error": error,
               "total_visible": total_visible, "params": params.urlencode(),
               "variables": FILTER_VARIABLES, "operators": OPERATORS,
               "var": request.GET.get("var", ""), "op": request.GET.get("op", "=="),
               "val": request.GET.get("val", ""), "filter": request.GET.get("filter", "")}
    return render_page(request, "dashboard/blocks.html", "dashboard/partials/blocks_table.html", context)


def visible_block_or_404(request: HttpRequest, pk: int) -> Block:
    """A block the user's organization may see; anyone else's is a 404, never a 403."""
    principal = require_member(request)
    block = blocks_visible_to(principal.organization).filter(pk=pk).first()
    if block is None:
        raise Http404("No such block.")
    return block


def owned_block_or_404(request: HttpRequest, pk: int, action: str) -> Block:
    """A block of the user's own organization, for its owners: 404 for a block the organization does
    not own (even a public one: nothing to say about it), 403 for a member."""
    block = visible_block_or_404(request, pk)
    if block.organization_id != dashboard_org(request).pk:
        raise Http404("No such block.")
    require_owner(request, action)
    return block


@login_required
def block_detail(request: HttpRequest, pk: int) -> HttpResponse:
    block = visible_block_or_404(request, pk)
    org = dashboard_org(request)
    own = block.organization_id == org.pk
    stale_before = timezone.now() - timedelta(seconds=settings.ENGINE_HEARTBEAT_STALE_S)
    engines = list(Engine.objects.filter(block=block).order_by("node")) if own else []  # endpoints: the owner's
    for engine in engines:
        engine.status = engine_status(engine, stale_before=stale_before)
    windows = [block_metrics(block=block, window=w, viewer=org) for w in ("1h", "24h")]
    grants = list(BlockGrant.objects.filter(block=block).select_related("organization")) if own else []
    reference = block_reference(block, organization=org)
    return render(request, "dashboard/block_detail.html", {
        "subject": block, "own": own, "reference": reference,
        "config": block.public_backend_config(), "metadata": block.metadata or {},
        "engines": engines, "windows": windows, "grants": grants,
        "decisions": route_decisions(organization=org, block=block, limit=ROUTE_DECISIONS_SHOWN),
        "block_log_url": f"{reverse('dashboard-request-log')}?{urlencode({'block': reference})}",
        "retention_days": settings.REQUEST_LOG_RETENTION_DAYS,
    })


@login_required
def block_search(request: HttpRequest) -> HttpResponse:
    """Search by meaning (registry.similarity): the blocks whose description fits a task best."""
    principal = require_member(request)
    task = request.GET.get("task", "").strip()
    policy = request.GET.get("policy", DEFAULT_POLICY)
    hits: list[Any] = []
    error = ""
    if task:
        try:
            hits = blocks_similar(organization=principal.organization, task=task, policy=policy, limit=10)
        except QueryError as exc:
            error = str(exc)
    return render_page(request, "dashboard/block_search.html", "dashboard/partials/block_hits.html",
                       {"task": task, "policy": policy, "policies": list(POLICIES), "hits": hits,
                        "error": error, "searched": bool(task)})


def _save_block(request: HttpRequest, *, block: Block | None) -> HttpResponse:
    principal = require_owner(request, "register or change blocks")
    operator = is_operator(principal)
    form = BlockForm(request.POST or None, block=block, operator=operator)
    if request.method == "POST" and form.is_valid():
        try:
            if block is None:
                saved = services.block_create(organization=principal.organization, data=form.validated)
            else:
                saved = services.block_update(block=block, data=form.validated, partial=False)
        except services.BlockConflict as exc:
            form.add_error("block_id", str(exc))
        except services.SecretNotKept:
            form.add_error("api_key", "Enter the API key again: the backend's destination changed.")
        else:
            messages.success(request, f"Saved block {saved.block_id}.")
            return redirect("dashboard-block", pk=saved.pk)
    status = 400 if request.method == "POST" else 200
    return render(request, "dashboard/block_form.html", {"form": form, "subject": block}, status=status)


@login_required
def block_create(request: HttpRequest) -> HttpResponse:
    return _save_block(request, block=None)


@login_required
def block_edit(request: HttpRequest, pk: int) -> HttpResponse:
    return _save_block(request, block=owned_block_or_404(request, pk, "change blocks"))


@login_required
@require_POST
def block_delete(request: HttpRequest, pk: int) -> HttpResponse:
    block = owned_block_or_404(request, pk, "delete blocks")
    services.block_delete(block=block)
    messages.success(request, f"Deleted block {block.block_id}.")
    return redirect("dashboard-blocks")
