"""The workflows API (docs/workflows.md). Thin views: validate, call one service, answer with the
registry's envelope. Members read, start and cancel their own runs; owners publish workflows and
cancel any run; approvers decide. Another organization's objects answer 404, like missing ones."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from django.http import Http404, StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from inference.workflows import live, selectors, services
from inference.workflows.models import Approval
from inference.workflows.serializers import (
    DecisionSerializer,
    RunStartSerializer,
    approval_dict,
    run_dict,
    version_dict,
    workflow_dict,
)
from registry import roles
from registry.envelope import fail, ok
from registry.models import Membership

ENVELOPE = OpenApiResponse(OpenApiTypes.OBJECT, description='{"success": true, "data": ...}')
ERROR = OpenApiResponse(OpenApiTypes.OBJECT, description='{"success": false, "message": "...", "errors": [...]}')
ERRORS = {400: ERROR, 403: ERROR, 404: ERROR}


def _refused(exc: services.WorkflowError):
    return fail("; ".join(exc.errors), status=exc.status, errors=exc.errors)


def _workflow(request, pk: int):
    workflow = selectors.workflow_get(organization=request.user.organization, pk=pk)
    if workflow is None:
        raise Http404("Not found.")
    return workflow


def _run(request, pk: int):
    run = selectors.run_get(organization=request.user.organization, pk=pk)
    if run is None:
        raise Http404("Not found.")
    return run


class WorkflowsView(APIView):
    @extend_schema(operation_id="api_workflows_list", responses={200: ENVELOPE})
    def get(self, request):
        return ok([workflow_dict(w) for w in selectors.workflows_of(request.user.organization)])

    @extend_schema(operation_id="api_workflows_publish", request=OpenApiTypes.OBJECT,
                   responses={200: ENVELOPE, 201: ENVELOPE, 409: ERROR, 422: ERROR, **ERRORS},
                   description='The workflow document as JSON, or {"document": "<JSON or YAML text>"}. '
                               "A new version of the workflow of that name; the same document again is 200. "
                               "A document that is not a valid workflow (its fields, graph, templates, blocks or "
                               "approvers) is a 422 naming every error; text that is no document is a 400.")
    def post(self, request):
        roles.require_owner(request.user, "publish workflows")
        data = request.data
        raw = data["document"] if isinstance(data, dict) and set(data) == {"document"} else data
        try:
            version, created = services.workflow_publish(principal=request.user, raw=raw)
        except services.WorkflowError as exc:
            return _refused(exc)
        return ok({**workflow_dict(version.workflow), "version": version_dict(version)},
                  status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class WorkflowDetailView(APIView):
    @extend_schema(responses={200: ENVELOPE, 404: ERROR})
    def get(self, request, pk: int):
        workflow = _workflow(request, pk)
        return ok(workflow_dict(workflow, versions=list(workflow.versions.order_by("number"))))


class WorkflowVersionView(APIView):
    @extend_schema(responses={200: ENVELOPE, 404: ERROR})
    def get(self, request, pk: int, number: int):
        version = _workflow(request, pk).versions.filter(number=number).first()
        if version is None:
            raise Http404("Not found.")
        return ok(version_dict(version))


class WorkflowRunsView(APIView):
    @extend_schema(operation_id="api_workflow_runs_list", responses={200: ENVELOPE, 404: ERROR})
    def get(self, request, pk: int):
        return ok([run_dict(r) for r in selectors.runs_of(workflow=_workflow(request, pk))[:100]])

    @extend_schema(request=RunStartSerializer, responses={201: ENVELOPE, **ERRORS})
    def post(self, request, pk: int):
        workflow = _workflow(request, pk)
        serializer = RunStartSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            version = services.version_for_run(workflow=workflow, number=serializer.validated_data.get("version"))
            run = services.run_start(version=version, principal=request.user,
                                     input=serializer.validated_data["input"])
        except services.WorkflowError as exc:
            return _refused(exc)
        return ok(run_dict(run), status=status.HTTP_201_CREATED)


class RunDetailView(APIView):
    @extend_schema(operation_id="api_workflow_run", responses={200: ENVELOPE, 404: ERROR})
    def get(self, request, pk: int):
        run = _run(request, pk)
        return ok(run_dict(run, nodes=list(selectors.nodes_of(run)), approvals=list(run.approvals.all())))


class EventStreamRenderer(BaseRenderer):
    """Lets `Accept: text/event-stream` (or ?format=sse) through content negotiation; a refusal (404,
    400) still goes out as the JSON envelope, with a JSON content type (RunEventsView.finalize_response)."""

    media_type = "text/event-stream"
    format = "sse"
    charset = None

    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context=None) -> bytes:
        return json.dumps(data).encode()


def _sse(event: dict[str, Any]) -> bytes:
    return f"id: {event['seq']}\nevent: {event['type']}\ndata: {json.dumps(event)}\n\n".encode()


async def _event_stream(feed: AsyncIterator[list[dict[str, Any]]]) -> AsyncIterator[bytes]:
    # A browser's EventSource reconnects after `retry` ms, sending the last id as Last-Event-ID.
    yield b"retry: 1000\n\n"
    try:
        async for batch in feed:
            yield b"".join(_sse(e) for e in batch) if batch else b": keepalive\n\n"
        yield b"event: end\ndata: {}\n\n"
    except live.CredentialEnded as ended:
        payload = json.dumps({"success": False, "status": ended.status, "message": ended.message})
        yield f"event: error\ndata: {payload}\n\n".encode()


def _after(request) -> int | None:
    raw = request.headers.get("Last-Event-ID") or request.query_params.get("after") or "0"
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 10 else None


class RunEventsView(APIView):
    renderer_classes = [JSONRenderer, EventStreamRenderer]

    def finalize_response(self, request, response, *args, **kwargs):
        # Only the stream itself is text/event-stream; a refusal is the JSON envelope and says so.
        if isinstance(response, Response):
            request.accepted_renderer = JSONRenderer()
            request.accepted_media_type = JSONRenderer.media_type
        return super().finalize_response(request, response, *args, **kwargs)

    @extend_schema(operation_id="api_workflow_run_events", responses={
        (200, "text/event-stream"): OpenApiResponse(OpenApiTypes.STR, description="SSE: id = the event's number"),
        400: ERROR, 404: ERROR},
        parameters=[OpenApiParameter("after", int, description="resume after this event number "
                                                               "(or the Last-Event-ID header)")])
    def get(self, request, pk: int):
        run = _run(request, pk)
        after = _after(request)
        if after is None:
            return fail("Last-Event-ID / after: a non-negative event number")
        session = getattr(request, "session", None)
        session_key = session.session_key if request.auth is None and session is not None else None
        feed = live.follow(run_id=run.pk, after=after, principal=request.user, session_key=session_key)
        response = StreamingHttpResponse(_event_stream(feed), content_type="text/event-stream")
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"  # a proxy in front must not hold the stream back
        return response


class RunCancelView(APIView):
    @extend_schema(request=None, responses={200: ENVELOPE, 403: ERROR, 404: ERROR, 409: ERROR})
    def post(self, request, pk: int):
        run = _run(request, pk)
        person = services.person_of(request.user)
        if roles.caller_role(request.user) != Membership.OWNER and (person is None or person.pk != run.created_by_id):
            return fail("Only organization owners, or the member who started it, may cancel a run.", status=403)
        if not services.run_cancel(run=run):
            run.refresh_from_db()
            return fail(f"the run already {run.state}", status=409)
        run.refresh_from_db()
        return ok(run_dict(run))


class ApprovalsView(APIView):
    @extend_schema(operation_id="api_approvals_list", responses={200: ENVELOPE, 400: ERROR},
                   parameters=[OpenApiParameter("state", str, enum=[s for s, _ in Approval.STATES])])
    def get(self, request):
        state = request.query_params.get("state")
        if state is not None and state not in dict(Approval.STATES):
            return fail(f"state: one of {', '.join(dict(Approval.STATES))}")
        approvals = selectors.approvals_of(organization=request.user.organization, state=state).order_by("-pk")
        return ok([approval_dict(a) for a in approvals[:500]])


def _approval(request, pk: int) -> Approval:
    approval = selectors.approval_get(organization=request.user.organization, pk=pk)
    if approval is None:
        raise Http404("Not found.")
    return approval


class ApprovalDetailView(APIView):
    @extend_schema(operation_id="api_approval", responses={200: ENVELOPE, 404: ERROR})
    def get(self, request, pk: int):
        return ok(approval_dict(_approval(request, pk)))


class ApprovalDecisionView(APIView):
    @extend_schema(request=DecisionSerializer, responses={200: ENVELOPE, 409: ERROR, **ERRORS})
    def post(self, request, pk: int):
        approval = _approval(request, pk)
        serializer = DecisionSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            approval = services.approval_decide(approval=approval, principal=request.user, **serializer.validated_data)
        except services.WorkflowError as exc:
            return _refused(exc)
        return ok(approval_dict(approval))
