"""The planner API: which block would run a task, and the organization's planner configuration.

- POST /api/planner/select: a planner model chooses one block for a task (selection.py).
- POST /api/planner/explain: a dry run of `model: "auto"` for a conversation (routing.py): what would run,
  how it was chosen, what was considered. Nothing runs but the planner model, when the mode asks it.
- GET /api/planner/config (members), PUT/PATCH (owners): mode, planner block, default block, threshold.

The selection runs asynchronously (a planner model is a chat through the gateway): these sync DRF views run
it with async_to_sync, which under ASGI uses the server's event loop (and its pooled upstream connections).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from asgiref.sync import async_to_sync
from django.core.handlers.asgi import ASGIRequest
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from inference.backends.openai_compat import close_sessions
from inference.gateway.errors import OpenAIError
from inference.gateway.pipeline import planner_ask
from inference.gateway.validation import parse_chat_body
from inference.models import PlannerConfig
from inference.planner.routing import BadAutoModel, NoFittingModel, route_conversation
from inference.planner.selection import SelectRefused, planner_select
from inference.planner.selector import Task
from inference.planner.selectors import planner_config_get
from inference.planner.serializers import (
    PlannerConfigSerializer,
    PlannerExplainSerializer,
    PlannerSelectSerializer,
)
from inference.planner.services import PlannerConfigRefused, planner_config_update
from inference.planner.task import task_from_request
from registry import roles
from registry.envelope import Unprocessable, fail, ok
from registry.principal import Principal
from registry.selectors import block_reference

T = TypeVar("T")
ENVELOPE = OpenApiResponse(description='{"success": true, "data": ...} or {"success": false, "message": ...}')


def run_async(request: Request, work: Callable[[], Awaitable[T]]) -> T:
    """`work()` from a sync view. Outside ASGI (the test client, a WSGI server) async_to_sync makes an
    event loop per call: the upstream connections opened on it are closed with it."""
    private_loop = not isinstance(request._request, ASGIRequest)

    async def scoped() -> T:
        try:
            return await work()
        finally:
            if private_loop:
                await close_sessions()

    return async_to_sync(scoped)()


def config_dict(config: PlannerConfig, principal: Principal) -> dict[str, Any]:
    organization = principal.organization

    def name(block):
        return block_reference(block, organization=organization) if block is not None else None

    return {"mode": config.mode, "plannerBlock": name(config.planner_block), "defaultBlock": name(config.default_block),
            "minScore": config.min_score, "candidates": config.candidates,
            "updatedAt": config.updated_at.isoformat() if config.updated_at else None}


class PlannerConfigView(APIView):
    @extend_schema(operation_id="planner_config_get", summary="How model \"auto\" chooses a block for your "
                   "organization", responses={200: ENVELOPE})
    def get(self, request: Request) -> Response:
        return ok(config_dict(planner_config_get(organization=request.user.organization), request.user))

    def _write(self, request: Request, *, partial: bool) -> Response:
        roles.require_owner(request.user, "change the planner configuration")
        serializer = PlannerConfigSerializer(data=request.data, partial=partial,
                                             context={"organization": request.user.organization})
        serializer.is_valid(raise_exception=True)
        try:
            config = planner_config_update(organization=request.user.organization,
                                           values=serializer.validated_data, partial=partial)
        except PlannerConfigRefused as exc:
            raise Unprocessable(str(exc)) from exc
        return ok(config_dict(config, request.user))

    @extend_schema(operation_id="planner_config_replace", request=PlannerConfigSerializer,
                   summary="Set the planner configuration (fields left out get their defaults)",
                   responses={200: ENVELOPE})
    def put(self, request: Request) -> Response:
        return self._write(request, partial=False)

    @extend_schema(operation_id="planner_config_patch", request=PlannerConfigSerializer,
                   summary="Change some fields of the planner configuration", responses={200: ENVELOPE})
    def patch(self, request: Request) -> Response:
        return self._write(request, partial=True)


class PlannerSelectView(APIView):
    @extend_schema(
        operation_id="planner_select",
        summary="Ask a planner model to choose one block for a task",
        description="Candidates: the blocks named (each one you may run), else the best `limit` of a similarity "
                    "search. The planner block (named, else the configured one) answers {id, reason}; an "
                    "invalid answer is sent back once, then the similarity ranking's first is used "
                    "(source: fallback). id null: the planner found that none fits.",
        request=PlannerSelectSerializer, responses={200: ENVELOPE},
    )
    def post(self, request: Request) -> Response:
        serializer = PlannerSelectSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        task = Task(text=data["task"], metadata=data["metadata"], schemas=tuple(data.get("schemas") or ()))
        principal: Principal = request.user
        try:
            result = run_async(request, lambda: planner_select(
                principal=principal, task=task, kind=data["kind"], candidates=data.get("candidates"),
                planner=data.get("planner"), limit=data["limit"],
                ask_for=lambda planner: planner_ask(principal, planner)))
        except SelectRefused as exc:
            if exc.status == 422:
                raise Unprocessable(exc.message) from exc
            return fail(exc.message, status=exc.status)
        return ok(result.to_dict())


class PlannerExplainView(APIView):
    @extend_schema(
        operation_id="planner_explain",
        summary="Dry run: what model \"auto\" would choose for this conversation, and why",
        request={"application/json": {"$ref": "#/components/schemas/PlannerExplainRequest"}},
        responses={200: ENVELOPE},
    )
    def post(self, request: Request) -> Response:
        PlannerExplainSerializer(data=request.data).is_valid(raise_exception=True)
        try:
            chat = parse_chat_body({"model": "auto", **request.data})
        except OpenAIError as exc:
            return fail(exc.message)
        principal: Principal = request.user
        task = task_from_request(chat.request)
        try:
            route = run_async(request, lambda: route_conversation(
                principal=principal, request=chat.request, prompt_tokens=chat.estimated_prompt_tokens,
                ask_for=lambda planner: planner_ask(principal, planner)))
        except BadAutoModel as exc:
            return fail(str(exc))
        except NoFittingModel as exc:
            return ok({"model": None, "outcome": "no_fitting_model", "mode": exc.mode, "message": exc.message,
                       "route": None, "considered": exc.considered, "task": task.text})
        return ok({"model": route.model, "outcome": "default_block" if route.default else "chosen",
                   "mode": route.mode, "message": route.header(), "route": route.to_dict(),
                   "considered": list(route.considered), "task": task.text})
