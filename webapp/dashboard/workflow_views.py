"""Workflows pages: the list with an upload form (JSON or YAML, errors shown in place), one
workflow's versions and runs with a form to start one, and a run's page whose DAG and node states
refresh as its events come (static/run_live.js follows the SSE feed /api/workflow-runs/<id>/events and
has htmx re-fetch the run's partial; a slow poll is the fallback).

Writes go through inference.workflows.services, the same rules as the API: publishing is for
owners, starting a run for any member."""

from __future__ import annotations

import json

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from inference.workflows import dsl, selectors, services
from inference.workflows import graph as dag
from inference.workflows.models import Workflow, WorkflowRun
from registry import jsonsafe
from registry.models import Membership
from webapp.dashboard.access import dashboard_principal, dashboard_role, require_member, require_owner
from webapp.dashboard.dag_svg import dag_svg

# The run's SSE feed (static/run_live.js) refreshes the page on each event; the poll is the fallback.
POLL_S = 5
MAX_UPLOAD_BYTES = 256 * 1024


def _workflow_or_404(request: HttpRequest, pk: int) -> Workflow:
    workflow = selectors.workflow_get(organization=require_member(request).organization, pk=pk)
    if workflow is None:
        raise Http404("No such workflow.")
    return workflow


@login_required
@require_http_methods(["GET", "POST"])
def workflows(request: HttpRequest) -> HttpResponse:
    org = require_member(request).organization
    errors: list[str] = []
    status = 200
    text = ""
    if request.method == "POST":
        require_owner(request, "publish workflows")
        upload = request.FILES.get("file")
        if upload is not None:
            if upload.size > MAX_UPLOAD_BYTES:
                errors, status = [f"the file is larger than {MAX_UPLOAD_BYTES} bytes"], 400
            else:
                try:
                    text = upload.read().decode()
                except UnicodeDecodeError:
                    errors, status = ["the file is not UTF-8 text"], 400
        else:
            text = request.POST.get("document", "")
        if not errors and not text.strip():
            errors, status = ["paste a workflow document or choose a file"], 400
        if not errors:
            try:
                # Parsed here first: a YAML escape can make a NUL that PostgreSQL cannot store.
                document = dsl.parse(text)
                jsonsafe.check_value(document, refuse_nul=True)
                version, _ = services.workflow_publish(principal=dashboard_principal(request), raw=document)
            except dsl.DocumentError as exc:
                errors, status = exc.errors, 400
            except jsonsafe.UnsafeJSON as exc:
                errors, status = [exc.message], 400
            except services.WorkflowError as exc:
                errors, status = exc.errors, exc.status
            else:
                return redirect("dashboard-workflow", pk=version.workflow_id)
    return render(request, "dashboard/workflows/list.html", {
        "org": org, "workflows": selectors.workflows_of(org).prefetch_related("versions"),
        "errors": errors, "document": text}, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def workflow_detail(request: HttpRequest, pk: int) -> HttpResponse:
    workflow = _workflow_or_404(request, pk)
    errors: list[str] = []
    status = 200
    run_input = request.POST.get("input", "{}") if request.method == "POST" else "{}"
    if request.method == "POST":
        try:
            value = jsonsafe.loads(run_input, refuse_nul=True)
        except jsonsafe.UnsafeJSON as exc:
            errors, status = [f"input: {exc.message}"], 400
        except ValueError as exc:
            errors, status = [f"input: not JSON ({exc})"], 400
        if not errors:
            try:
                number = request.POST.get("version") or None
                version = services.version_for_run(workflow=workflow, number=int(number) if number else None)
                run = services.run_start(version=version, principal=dashboard_principal(request), input=value)
            except ValueError:
                errors, status = ["version: a version number"], 400
            except services.WorkflowError as exc:
                errors, status = exc.errors, exc.status
            else:
                return redirect("dashboard-workflow-run", pk=run.pk)
    versions = list(workflow.versions.order_by("-number"))
    latest = versions[0] if versions else None
    return render(request, "dashboard/workflows/detail.html", {
        "org": workflow.organization, "workflow": workflow, "versions": versions,
        "document": json.dumps(latest.document, indent=2, ensure_ascii=False) if latest else "",
        "runs": selectors.runs_of(workflow=workflow)[:50], "errors": errors, "run_input": run_input,
    }, status=status)


def _run_or_404(request: HttpRequest, pk: int) -> WorkflowRun:
    run = selectors.run_get(organization=require_member(request).organization, pk=pk)
    if run is None:
        raise Http404("No such run.")
    return run


@login_required
def run_detail(request: HttpRequest, pk: int) -> HttpResponse:
    run = _run_or_404(request, pk)
    nodes = list(selectors.nodes_of(run))
    document = run.version.document
    graph = dag.build(document["nodes"])
    context = {
        "org": run.organization, "run": run, "nodes": nodes, "poll_s": POLL_S,
        "finished": run.state in WorkflowRun.FINISHED,
        "approvals": {a.node_id: a for a in run.approvals.all()},
        "svg": dag_svg(graph, states={n.node_id: n.state for n in nodes},
                       types={n["id"]: n.get("type", "") for n in document["nodes"]}),
        "output": json.dumps(run.output, indent=2, ensure_ascii=False) if run.output is not None else "",
    }
    template = "dashboard/workflows/run_partial.html" if request.headers.get("HX-Request") else \
        "dashboard/workflows/run.html"
    return render(request, template, context)


@login_required
@require_POST
def run_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    run = _run_or_404(request, pk)
    # The API's rule (inference.workflows.views.RunCancelView): owners, or the member who started it.
    if dashboard_role(request) != Membership.OWNER and run.created_by_id != request.user.pk:
        raise PermissionDenied("Only owners, or the member who started it, cancel a run.")
    services.run_cancel(run=run)
    return redirect("dashboard-workflow-run", pk=run.pk)
