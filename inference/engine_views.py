"""REST view of the engines serving an organization's blocks (what the registry shows operators).

Served by the web process, not a worker: the workers only write the Engine rows it reads."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.decorators import api_view
from rest_framework.request import Request
from rest_framework.response import Response

from inference.backends.engines import engine_list_for
from inference.models import Engine
from registry.envelope import fail, ok

STATES = [state for state, _ in Engine.STATES]


@extend_schema(
    operation_id="engines_list",
    summary="Engines serving the organization's blocks",
    parameters=[OpenApiParameter("state", str, enum=STATES), OpenApiParameter("block", str)],
    responses={200: OpenApiTypes.OBJECT, 400: OpenApiTypes.OBJECT},
)
@api_view(["GET"])
def engine_list(request: Request) -> Response:
    state = request.query_params.get("state")
    if state is not None and state not in STATES:
        return fail(f"state must be one of {', '.join(STATES)}; got {state!r}")
    return ok(engine_list_for(organization=request.user.organization, block_id=request.query_params.get("block"),
                              state=state))
