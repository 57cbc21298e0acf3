"""REST API for blocks. Thin: validate, call one selector or service, serialize with to_dict().

Another organization's private block answers exactly like a missing one (404, same
message), so the API never confirms that a block exists to someone who may not see it.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.authentication import SessionScheme
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.plumbing import build_bearer_security_scheme_object
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from registry import roles, selectors, services, similarity
from registry.envelope import fail, ok
from registry.models import Block
from registry.query import QueryError
from registry.serializers import BlockWriteSerializer

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000

ENVELOPE = OpenApiResponse(OpenApiTypes.OBJECT, description='{"success": true, "data": ...}')
ERROR = OpenApiResponse(OpenApiTypes.OBJECT, description='{"success": false, "message": "..."}')
PAGE_PARAMS = [
    OpenApiParameter("limit", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
                     description=f"Page size (default {DEFAULT_LIMIT}, at most {MAX_LIMIT})."),
    OpenApiParameter("offset", {"type": "integer", "minimum": 0, "maximum": 10**9},
                     description="Rows to skip (default 0). The reply's hasMore says whether another page follows."),
]
SEED_FILTER_EXAMPLE = {
    "body": {
        "values": {
            "matchType": "cluster",
            "filter": {
                "clusterQuery": {
                    "logicalOperator": "AND",
                    "conditions": [
                        {"variable": "tags", "operator": "IN", "value": ["qa"]},
                        {"variable": "inputProtocols", "operator": "==", "value": "text/plain"},
                    ],
                }
            },
        }
    }
}
SIMILARITY_EXAMPLE = {
    "body": {
        "values": {
            "matchType": "cluster",
            "rankingPolicyRule": {
                "values": {
                    "executionMode": "code",
                    "policyCodePath": "policies/similarity_policy.zip",
                    "settings": {"maxResults": 10, "enableCaching": True},
                    "parameters": {
                        "filterRule": {
                            "clusterQuery": {
                                "logicalOperator": "AND",
                                "conditions": [
                                    {"variable": "task_description", "operator": "LIKE",
                                     "value": "summarize research paper"}
                                ],
                            }
                        },
                        "return": 5,
                    },
                }
            },
        }
    }
}
NOT_FOUND = "block not found"


class ApiKeyScheme(OpenApiAuthenticationExtension):
    """Documents registry.auth.ApiKeyAuthentication in /api/schema/ (found by import)."""

    target_class = "registry.auth.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema):
        return build_bearer_security_scheme_object(header_name="Authorization", token_prefix="Bearer")


class OrganizationSessionScheme(SessionScheme):
    target_class = "registry.auth.SessionAuthentication"


class PageError(ValueError):
    pass


def _int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise PageError(f"{name}: must be an integer") from None
    if not low <= value <= high:
        raise PageError(f"{name}: must be between {low} and {high}")
    return value


def _page(request: Request, queryset) -> Response:
    """One page and whether another follows. One extra row answers that; a COUNT(*) over a
    large registry would cost more than the page itself."""
    limit = _int_param(request, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    offset = _int_param(request, "offset", 0, 0, 10**9)
    rows = list(queryset[offset : offset + limit + 1])
    response = ok([block.to_dict() for block in rows[:limit]])
    response.data.update(limit=limit, offset=offset, hasMore=len(rows) > limit)
    return response


def _write_serializer(request: Request, *, partial: bool, block_id: str | None = None) -> BlockWriteSerializer:
    """`block_id`: the stored id of the block being written (never a qualified reference)."""
    data = request.data
    if block_id is not None and isinstance(data, dict):
        if "id" in data and data["id"] != block_id:
            raise QueryError("id: a block's id cannot be changed (the body's id differs from the URL's)")
        data = {**data, "id": block_id}
    serializer = BlockWriteSerializer(data=data, partial=partial,
                                      context={"operator": roles.is_operator(request.user)})
    serializer.is_valid(raise_exception=True)
    return serializer


class BlockListView(APIView):
    @extend_schema(
        operation_id="blocks_list",
        summary="List the blocks your organization can see",
        parameters=[OpenApiParameter("kind", str, enum=["llm", "optimizer"]), *PAGE_PARAMS],
        responses={200: ENVELOPE, 400: ERROR, 401: ERROR},
    )
    def get(self, request: Request) -> Response:
        kind = request.query_params.get("kind") or None
        if kind not in (None, Block.LLM, Block.OPTIMIZER):
            return fail("kind: must be 'llm' or 'optimizer'")
        try:
            return _page(request, selectors.blocks_list(organization=request.user.organization, kind=kind))
        except PageError as exc:
            return fail(str(exc))

    @extend_schema(
        operation_id="blocks_create",
        summary="Register a block owned by your organization",
        request=BlockWriteSerializer,
        responses={201: ENVELOPE, 400: ERROR, 401: ERROR, 403: ERROR, 409: ERROR},
    )
    def post(self, request: Request) -> Response:
        roles.require_owner(request.user, "register blocks")
        serializer = _write_serializer(request, partial=False)
        try:
            block = services.block_create(organization=request.user.organization, data=serializer.validated_data)
        except services.BlockConflict as exc:
            return fail(str(exc), status=status.HTTP_409_CONFLICT)
        return ok(block.to_dict(), status=status.HTTP_201_CREATED)


class BlockDetailView(APIView):
    def _owned(self, request: Request, block_id: str) -> tuple[Block | None, Response | None]:
        # The same naming rule as reads: a plain id is the caller's own block (then the platform's),
        # so writes only ever reach a foreign block when it is named in full, and then answer 403.
        organization = request.user.organization
        block = selectors.block_get_visible(organization=organization, block_id=block_id)
        if block is None:
            return None, fail(NOT_FOUND, status=status.HTTP_404_NOT_FOUND)
        if block.organization_id != organization.id:
            # Visible (public or granted) but someone else's: saying so leaks nothing.
            return None, fail("only the owning organization can change this block", status=status.HTTP_403_FORBIDDEN)
        # Visibility and the backend decide who may call a block and where its prompts go: owners only.
        roles.require_owner(request.user, "change or delete blocks")
        return block, None

    @extend_schema(operation_id="blocks_get", summary="Get one block", responses={200: ENVELOPE, 401: ERROR, 404: ERROR})
    def get(self, request: Request, block_id: str) -> Response:
        block = selectors.block_get_visible(organization=request.user.organization, block_id=block_id)
        if block is None:
            return fail(NOT_FOUND, status=status.HTTP_404_NOT_FOUND)
        return ok(block.to_dict())

    def _update(self, request: Request, block_id: str, partial: bool) -> Response:
        block, error = self._owned(request, block_id)
        if error is not None:
            return error
        request.data  # noqa: B018 (parses the body, so DRF knows whether there was one)
        if not partial and request.stream is None:
            # PUT replaces every field: with no body it would silently reset the block to defaults.
            return fail("PUT replaces the block: send its fields as a JSON body (PATCH changes some)")
        try:
            serializer = _write_serializer(request, partial=partial, block_id=block.block_id)
        except QueryError as exc:
            return fail(str(exc))
        try:
            block = services.block_update(block=block, data=serializer.validated_data, partial=partial)
        except services.SecretNotKept as exc:
            return fail(str(exc))
        return ok(block.to_dict())

    @extend_schema(
        operation_id="blocks_patch",
        summary="Change some fields of your block",
        request=BlockWriteSerializer,
        responses={200: ENVELOPE, 400: ERROR, 401: ERROR, 403: ERROR, 404: ERROR},
    )
    def patch(self, request: Request, block_id: str) -> Response:
        return self._update(request, block_id, partial=True)

    @extend_schema(
        operation_id="blocks_replace",
        summary="Replace your block (every field but the id)",
        request=BlockWriteSerializer,
        responses={200: ENVELOPE, 400: ERROR, 401: ERROR, 403: ERROR, 404: ERROR},
    )
    def put(self, request: Request, block_id: str) -> Response:
        return self._update(request, block_id, partial=False)

    @extend_schema(operation_id="blocks_delete", summary="Delete your block", responses={200: ENVELOPE, 401: ERROR, 403: ERROR, 404: ERROR})
    def delete(self, request: Request, block_id: str) -> Response:
        block, error = self._owned(request, block_id)
        if error is not None:
            return error
        services.block_delete(block=block)
        return ok({"id": block.block_id, "deleted": True})


class BlockQueryView(APIView):
    @extend_schema(
        operation_id="blocks_query",
        summary="Filter blocks with conditions",
        description=(
            "Accepts the seed's filter payload (body.values.filter.clusterQuery), a bare "
            '{"conditions": [...], "logicalOperator": "AND"|"OR", "kind": ...}, or a simple '
            '{"tags": ["qa"], "inputProtocols": ["text/plain"]} (lists mean IN, scalars ==). '
            "See the README for the operators and variables."
        ),
        request={"application/json": {"$ref": "#/components/schemas/BlockQuery"}},
        parameters=PAGE_PARAMS,
        examples=[OpenApiExample("seed filter payload", value=SEED_FILTER_EXAMPLE, request_only=True)],
        responses={200: ENVELOPE, 400: ERROR, 401: ERROR},
    )
    def post(self, request: Request) -> Response:
        try:
            queryset = selectors.blocks_query(organization=request.user.organization, payload=request.data)
            return _page(request, queryset)
        except (QueryError, PageError) as exc:
            return fail(str(exc))


class BlockSimilarityView(APIView):
    @extend_schema(
        operation_id="blocks_similarity",
        summary="Rank blocks by similarity to a task description",
        description=(
            "The seed's similarity payload. policyCodePath names a registered ranking policy (cosine, the "
            "default; hybrid; performance; text-overlap); the seed's example path "
            "'policies/similarity_policy.zip' means the default, and code is never loaded from the request. "
            "Each result carries its score and the policy's parts; `abstain` is true when no block fits "
            "(the best cosine similarity is below SIMILARITY_MIN_SCORE). See docs/registry-api.md."
        ),
        request={"application/json": {"$ref": "#/components/schemas/Similarity"}},
        examples=[OpenApiExample("seed similarity payload", value=SIMILARITY_EXAMPLE, request_only=True)],
        responses={200: ENVELOPE, 400: ERROR, 401: ERROR},
    )
    def post(self, request: Request) -> Response:
        try:
            search, hits = similarity.blocks_similar_to_payload(organization=request.user.organization,
                                                                payload=request.data, principal=request.user)
        except QueryError as exc:
            return fail(str(exc))
        data: list[dict[str, Any]] = [similarity.hit_to_dict(hit) for hit in hits]
        response = ok(data)
        response.data.update(policy=search.policy, abstain=similarity.similarity_abstains(hits))
        return response
