"""REST views of the inference app: per-block metrics over time windows."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.decorators import api_view
from rest_framework.request import Request
from rest_framework.response import Response

from inference import selectors
from registry.envelope import fail, ok
from registry.selectors import block_get_visible


@extend_schema(
    operation_id="blocks_metrics",
    summary="A block's requests, errors, latency and tokens over a time window",
    description="The block's owner sees every organization's requests; anyone else only its own.",
    parameters=[OpenApiParameter("window", str, enum=list(selectors.WINDOWS))],
    responses={200: OpenApiTypes.OBJECT, 400: OpenApiTypes.OBJECT, 404: OpenApiTypes.OBJECT},
)
@api_view(["GET"])
def block_metrics(request: Request, block_id: str) -> Response:
    window = request.query_params.get("window", "1h")
    if window not in selectors.WINDOWS:
        return fail(f"window must be one of {', '.join(selectors.WINDOWS)}; got {window!r}")
    # The registry's naming rule: own or platform id, or another organization's qualified id; a
    # foreign private block is simply not there.
    block = block_get_visible(organization=request.user.organization, block_id=block_id)
    if block is None:
        return fail(f"Block {block_id!r} not found", status=404)
    return ok(selectors.block_metrics(block=block, window=window, viewer=request.user.organization))
