"""Which block a `model` names for one organization, cached per (organization, model) briefly.

The hot path would otherwise query the database on every request. One indexed lookup per
name, never the organization's whole catalogue (which can hold 100,000 public blocks). A block
that is disabled, deleted or unshared stops resolving within BLOCK_CACHE_SECONDS; an unknown
name is cached too, so a flood of bad names costs one query per name per TTL.
"""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.db import close_old_connections
from django.db.models import Case, IntegerField, Q, Value, When

from inference.selectors import callable_llm_blocks
from inference.ttlcache import AsyncTTLCache
from registry.models import Block, Organization

BLOCK_CACHE_SECONDS = 2.0

_cache: AsyncTTLCache[Block | None] = AsyncTTLCache(ttl=BLOCK_CACHE_SECONDS, refresh_after=BLOCK_CACHE_SECONDS / 2)


def clear_block_cache() -> None:
    _cache.clear()


def _resolve(organization: Organization, model: str) -> Block | None:
    close_old_connections()
    return (
        callable_llm_blocks(organization)
        .filter(Q(block_id=model) | Q(name=model))
        # An id wins over a name; names are not unique across organizations, so the caller's own wins a clash.
        .annotate(rank=Case(When(block_id=model, then=Value(0)), When(organization=organization, then=Value(1)),
                            default=Value(2), output_field=IntegerField()))
        .order_by("rank", "block_id")
        .first()
    )


def _list(organization: Organization) -> list[Block]:
    close_old_connections()
    # A block with no backend is a registry entry only: /v1/models lists what can answer.
    return list(callable_llm_blocks(organization).exclude(backend_type=""))


_aresolve = sync_to_async(_resolve, thread_sensitive=False)
list_blocks = sync_to_async(_list, thread_sensitive=False)


async def resolve_block(organization: Organization, model: str) -> Block | None:
    """The enabled LLM block that `model` (an id or a name) names for this organization, if any."""
    return await _cache.get((organization.pk, model), lambda: _aresolve(organization, model))
