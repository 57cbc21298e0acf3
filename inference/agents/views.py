"""The agents API (docs/agents.md). Thin views: validate, call one service, answer with the registry's
envelope. Members read agents and start and stop their own runs; owners create, change and delete
agents and stop any run. Another organization's agents and runs answer 404, like missing ones."""

from __future__ import annotations

from django.http import Http404, StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from inference.agents import live, selectors, services
from inference.agents.serializers import (
    AgentRunStartSerializer,
    AgentUpdateSerializer,
    AgentWriteSerializer,
    agent_dict,
    run_dict,
)

# The SSE framing and renderer of the workflow run feed: the same wire format for both feeds.
from inference.workflows.views import EventStreamRenderer, _event_stream
from registry import roles
from registry.envelope import fail, ok
from registry.models import Membership

ENVELOPE = OpenApiResponse(OpenApiTypes.OBJECT, description='{"success": true, "data": ...}')
ERROR = OpenApiResponse(OpenApiTypes.OBJECT, description='{"success": false, "message": "...", "errors": [...]}')
UNPROCESSABLE = OpenApiResponse(OpenApiTypes.OBJECT, description=(
    "A definition that does not hold together: a signature that does not parse (the message names the "
    "position), a description under 20 or a definition under 100 characters, options out of range, a tool "
    "given with the wrong keys, two tools of one name"))
ERRORS = {400: ERROR, 403: ERROR, 404: ERROR}


def _refused(exc: services.AgentRefused) -> Response:
    return fail("; ".join(exc.errors), status=exc.status, errors=exc.errors)


def _agent(request, name: str):
    agent = selectors.agent_get(organization=request.user.organization, name=name)
    if agent is None:
        raise Http404("Not found.")
    return agent


def _run(request, pk):
    run = selectors.run_get(organization=request.user.organization, pk=pk)
    if run is None:
        raise Http404("Not found.")
    return run


class AgentsView(APIView):
    @extend_schema(operation_id="api_agents_list", responses={200: ENVELOPE})
    def get(self, request):
        return ok([agent_dict(a) for a in selectors.agents_of(request.user.organization)])

    @extend_schema(operation_id="api_agents_create", request=AgentWriteSerializer,
                   responses={201: ENVELOPE, 409: ERROR, 422: UNPROCESSABLE, **ERRORS})
    def post(self, request):
        roles.require_owner(request.user, "create agents")
        serializer = AgentWriteSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            agent = services.agent_create(principal=request.user, data=serializer.validated_data)
        except services.AgentRefused as exc:
            return _refused(exc)
        return ok(agent_dict(agent), status=status.HTTP_201_CREATED)


class AgentDetailView(APIView):
    @extend_schema(operation_id="api_agent", responses={200: ENVELOPE, 404: ERROR})
    def get(self, request, name: str):
        return ok(agent_dict(_agent(request, name)))

    @extend_schema(operation_id="api_agent_update", request=AgentUpdateSerializer,
                   responses={200: ENVELOPE, 422: UNPROCESSABLE, **ERRORS})
    def put(self, request, name: str):
        agent = _agent(request, name)
        roles.require_owner(request.user, "change agents")
        serializer = AgentUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            agent = services.agent_update(agent=agent, data=serializer.validated_data)
        except services.AgentRefused as exc:
            return _refused(exc)
        return ok(agent_dict(agent))

    @extend_schema(operation_id="api_agent_delete", responses={200: ENVELOPE, 409: ERROR, 403: ERROR, 404: ERROR})
    def delete(self, request, name: str):
        agent = _agent(request, name)
        roles.require_owner(request.user, "delete agents")
        try:
            services.agent_delete(agent=agent)
        except services.AgentRefused as exc:
            return _refused(exc)
        return ok({"deleted": name})


class AgentRunsView(APIView):
    @extend_schema(operation_id="api_agent_runs_list", responses={200: ENVELOPE, 404: ERROR})
    def get(self, request, name: str):
        return ok([run_dict(r) for r in selectors.runs_of(agent=_agent(request, name))[:100]])

    @extend_schema(operation_id="api_agent_runs_start", request=AgentRunStartSerializer,
                   responses={201: ENVELOPE, 422: OpenApiResponse(OpenApiTypes.OBJECT, description=(
                       "input values that do not fit the agent's signature, or options out of range")), **ERRORS},
                   description="Starts a run; follow it at /api/agent-runs/<id>/events (SSE) or "
                               "/ws/agent-runs/<id>/events, stop it with POST /api/agent-runs/<id>/stop.")
    def post(self, request, name: str):
        agent = _agent(request, name)
        serializer = AgentRunStartSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        try:
            run = services.agent_run_start(agent=agent, principal=request.user, input=data["input"],
                                           model=data.get("model"), options=data.get("options"))
        except services.AgentRefused as exc:
            return _refused(exc)
        return ok(run_dict(run), status=status.HTTP_201_CREATED)


class RunDetailView(APIView):
    @extend_schema(operation_id="api_agent_run", responses={200: ENVELOPE, 404: ERROR})
    def get(self, request, pk):
        run = _run(request, pk)
        return ok(run_dict(run, events=list(run.events.order_by("seq"))))


class RunEventsView(APIView):
    renderer_classes = [JSONRenderer, EventStreamRenderer]

    def finalize_response(self, request, response, *args, **kwargs):
        # Only the stream itself is text/event-stream; a refusal is the JSON envelope and says so.
        if isinstance(response, Response):
            request.accepted_renderer = JSONRenderer()
            request.accepted_media_type = JSONRenderer.media_type
        return super().finalize_response(request, response, *args, **kwargs)

    @extend_schema(operation_id="api_agent_run_events", responses={
        (200, "text/event-stream"): OpenApiResponse(OpenApiTypes.STR, description="SSE: id = the event's number"),
        400: ERROR, 404: ERROR},
        parameters=[OpenApiParameter("after", int, description="resume after this event number "
                                                               "(or the Last-Event-ID header)")])
    def get(self, request, pk):
        run = _run(request, pk)
        raw = request.headers.get("Last-Event-ID") or request.query_params.get("after") or "0"
        if not (raw.isascii() and raw.isdigit() and len(raw) < 10):
            return fail("Last-Event-ID / after: a non-negative event number")
        session = getattr(request, "session", None)
        session_key = session.session_key if request.auth is None and session is not None else None
        feed = live.follow(run_id=run.pk, after=int(raw), principal=request.user, session_key=session_key)
        response = StreamingHttpResponse(_event_stream(feed), content_type="text/event-stream")
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"
        return response


class RunStopView(APIView):
    @extend_schema(operation_id="api_agent_run_stop", request=None,
                   responses={200: ENVELOPE, 403: ERROR, 404: ERROR, 409: ERROR})
    def post(self, request, pk):
        run = _run(request, pk)
        person = services.person_of(request.user)
        if roles.caller_role(request.user) != Membership.OWNER and (person is None or person.pk != run.created_by_id):
            return fail("Only organization owners, or the member who started it, may stop a run.", status=403)
        if not services.agent_run_stop(run=run):
            run.refresh_from_db()
            return fail(f"the run already {run.state}", status=409)
        run.refresh_from_db()
        return ok(run_dict(run))
