"""The browser dashboard: one URL per page; htmx requests get the partial that changes."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from inference.backends.factory import EMBEDDING_ONLY_BACKENDS
from inference.models import Engine
from registry.models import Block
from registry.selectors import block_reference, blocks_visible_to
from webapp.dashboard.access import dashboard_org


def render_page(request: HttpRequest, page: str, partial: str, context: dict) -> HttpResponse:
    """The whole page, or only `partial` for an htmx request (the part that changes)."""
    template = partial if request.headers.get("HX-Request") else page
    return render(request, template, context)


def engine_status(engine: Engine, *, stale_before) -> str:
    """What the page shows: a ready engine whose heartbeat is older than ENGINE_HEARTBEAT_STALE_S is
    `stale` (the router no longer sends it requests, inference.backends.engines), not `ready`."""
    if engine.state == Engine.READY and (engine.last_heartbeat is None or engine.last_heartbeat < stale_before):
        return "stale"
    return engine.state


@login_required
def engines(request: HttpRequest) -> HttpResponse:
    org = dashboard_org(request)
    rows: list[Engine] = []
    if org is not None:
        # The organization's own blocks' engines only, as the API's (engine_list_for): a public block
        # is callable by all, but its engines' nodes and endpoints are its owner's business.
        rows = list(Engine.objects.filter(block__organization=org).select_related("block").order_by(
            "block__block_id", "node"))
    stale_before = timezone.now() - timedelta(seconds=settings.ENGINE_HEARTBEAT_STALE_S)
    for engine in rows:
        engine.status = engine_status(engine, stale_before=stale_before)
    return render_page(request, "dashboard/engines.html", "dashboard/partials/engines_table.html",
                       {"engines": rows, "stale_after_s": settings.ENGINE_HEARTBEAT_STALE_S})


@login_required
def chat(request: HttpRequest) -> HttpResponse:
    org = dashboard_org(request)
    models: list[str] = []
    if org is not None:
        # As the chat socket resolves them: another organization's block by its qualified id. Blocks
        # that only embed serve no chat.
        rows = (blocks_visible_to(org).filter(kind=Block.LLM, enabled=True)
                .exclude(backend_type__in=EMBEDDING_ONLY_BACKENDS))
        models = sorted(block_reference(b, organization=org) for b in rows)
    builtin = settings.SWITCHBOARD_BUILTIN_BLOCK_ID
    default_model = builtin if builtin in models else (models[0] if models else "")
    return render(request, "dashboard/chat.html", {"models": models, "default_model": default_model})
