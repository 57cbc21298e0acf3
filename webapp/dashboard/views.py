"""The browser dashboard: one URL per page; htmx requests get the partial that changes."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.db.models import Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from inference.models import Engine
from registry.auth import principal_for_user
from registry.models import Block
from registry.selectors import block_reference, blocks_visible_to


def _organization(request: HttpRequest):
    principal = principal_for_user(request.user)
    return principal.organization if principal else None


def _render(request: HttpRequest, page: str, partial: str, context: dict) -> HttpResponse:
    template = partial if request.headers.get("HX-Request") else page
    return render(request, template, context)


@login_required
def blocks(request: HttpRequest) -> HttpResponse:
    org = _organization(request)
    query = request.GET.get("q", "").strip()
    rows = Block.objects.none()
    if org is not None:
        rows = blocks_visible_to(org).select_related("organization").order_by("kind", "block_id")
        if query:
            rows = rows.filter(Q(block_id__icontains=query) | Q(description__icontains=query))
    return _render(request, "dashboard/blocks.html", "dashboard/partials/blocks_table.html",
                   {"blocks": rows[:200], "q": query, "org": org})


@login_required
def engines(request: HttpRequest) -> HttpResponse:
    org = _organization(request)
    rows = Engine.objects.none()
    if org is not None:
        rows = Engine.objects.filter(block__in=blocks_visible_to(org)).select_related("block").order_by(
            "block__block_id", "node")
    return _render(request, "dashboard/engines.html", "dashboard/partials/engines_table.html",
                   {"engines": rows, "org": org})


@login_required
def chat(request: HttpRequest) -> HttpResponse:
    org = _organization(request)
    models: list[str] = []
    if org is not None:
        # As the chat socket resolves them: another organization's block by its qualified id.
        models = sorted(block_reference(b, organization=org)
                        for b in blocks_visible_to(org).filter(kind=Block.LLM, enabled=True))
    return render(request, "dashboard/chat.html", {"models": models, "org": org})
