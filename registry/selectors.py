"""Reads from the registry. Every read of blocks on behalf of a caller starts from
`blocks_visible_to`, so tenancy has one definition."""

from __future__ import annotations

from typing import Any

from django.db.models import Exists, OuterRef, Q, QuerySet

from registry.models import Block, BlockGrant, Organization
from registry.query import compile_query
from registry.ranking import SimilarityRequest, parse_similarity_payload, rank_blocks


def blocks_visible_to(organization: Organization) -> QuerySet[Block]:
    """The organization's own blocks, every public block, and blocks granted to it."""
    granted = BlockGrant.objects.filter(block=OuterRef("pk"), organization=organization)
    return (
        Block.objects.select_related("organization")
        .filter(Q(organization=organization) | Q(visibility=Block.PUBLIC) | Exists(granted))
        .order_by("block_id")
    )


def block_get_visible(*, organization: Organization, block_id: str) -> Block | None:
    """None both when the block does not exist and when the caller may not see it."""
    return blocks_visible_to(organization).filter(block_id=block_id).first()


def block_get_owned(*, organization: Organization, block_id: str) -> Block | None:
    return Block.objects.select_related("organization").filter(
        organization=organization, block_id=block_id
    ).first()


def blocks_list(*, organization: Organization, kind: str | None = None) -> QuerySet[Block]:
    qs = blocks_visible_to(organization)
    return qs.filter(kind=kind) if kind else qs


def blocks_query(*, organization: Organization, payload: Any) -> QuerySet[Block]:
    """Blocks matching a filter payload (any accepted shape). Raises QueryError."""
    q, kind = compile_query(payload)
    return blocks_list(organization=organization, kind=kind).filter(q)


def blocks_similar(*, organization: Organization, payload: Any) -> list[tuple[Block, float]]:
    """The similarity payload's candidates, ranked. Raises QueryError."""
    request: SimilarityRequest = parse_similarity_payload(payload)
    candidates = blocks_list(organization=organization, kind=request.kind).filter(request.filter)
    return rank_blocks(request, candidates)
