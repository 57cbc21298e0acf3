"""REST views of the inference app: per-block metrics over time windows, and the seed's discovery
`estimate` / `check_execute` (they read the backends' tokenizers, the metrics and the queues)."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    inline_serializer,
)
from rest_framework import serializers, status
from rest_framework.decorators import api_view
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from inference import selectors
from inference.estimator import check_execute, estimate
from registry.envelope import fail, ok
from registry.fields import StrictCharField
from registry.selectors import block_get_visible
from registry.tenancy.selectors import block_visible_get

ENVELOPE = OpenApiResponse(description='{"success": true, "data": ...} or {"success": false, "message": ...}')


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


# What inference.estimator reads (messages_from_query, input_size_of), for /api/schema/.
_TEXT = {"type": "string", "minLength": 1}
SEARCH_QUERY_SCHEMA = {
    "description": "A prompt string, a list of messages, the seed's input_data ({messages | prompts | text | "
                   "prompt | query | input}), or {\"input_size\": <prompt tokens>}.",
    "anyOf": [
        _TEXT,
        {"type": "array", "minItems": 1, "items": {"type": "object"}},
        {"type": "object", "required": ["input_size"], "properties": {"input_size": {"type": "integer", "minimum": 0}}},
        *({"type": "object", "required": [key], "not": {"required": ["input_size"]},
           "properties": {key: {"type": "array", "minItems": 1, "items": {"type": "object"}}}}
          for key in ("messages", "prompts")),
        *({"type": "object", "required": [key], "not": {"required": ["input_size"]}, "properties": {key: _TEXT}}
          for key in ("text", "prompt", "query", "input")),
    ],
}
_MAX_TOKENS = {"type": "integer", "minimum": 1, "nullable": True}


@extend_schema_field(SEARCH_QUERY_SCHEMA)
class SearchQueryField(serializers.JSONField):
    pass


@extend_schema_field({"type": "object", "properties": {"max_tokens": _MAX_TOKENS, "max_completion_tokens": _MAX_TOKENS},
                      "description": "e.g. {\"max_tokens\": 64}"})
class QueryParamsField(serializers.DictField):
    pass


EstimateRequest = inline_serializer("EstimateRequest", fields={
    "search_query": SearchQueryField(),
    "block_id": StrictCharField(max_length=200, help_text="unknown or not visible: 404"),
})
CheckExecuteRequest = inline_serializer("CheckExecuteRequest", fields={
    "search_query": SearchQueryField(),
    "query_params": QueryParamsField(required=False),
    "block_id": StrictCharField(max_length=200, help_text="unknown or not visible: 404"),
})


class _DiscoveryInput(serializers.Serializer):
    search_query = serializers.JSONField()
    query_params = serializers.DictField(required=False, default=dict)
    block_id = StrictCharField(max_length=200)


def _discovery(request, answer):
    serializer = _DiscoveryInput(data=request.data)
    serializer.is_valid(raise_exception=True)
    data = serializer.validated_data
    block = block_visible_get(organization=request.user.organization, block_id=data["block_id"])
    if block is None:
        return fail(f"unknown block {data['block_id']!r}", status=status.HTTP_404_NOT_FOUND)
    try:
        return ok(answer(principal=request.user, block=block, search_query=data["search_query"],
                         query_params=data.get("query_params")))
    except ValueError as exc:
        return fail(str(exc))


class EstimateView(APIView):
    @extend_schema(request=EstimateRequest, responses={200: ENVELOPE})
    def post(self, request):
        return _discovery(request, estimate)


class CheckExecuteView(APIView):
    @extend_schema(request=CheckExecuteRequest, responses={200: ENVELOPE})
    def post(self, request):
        return _discovery(request, check_execute)
