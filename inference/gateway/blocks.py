"""Which block a `model` names for one organization, cached per (organization, model) briefly.

The naming rule is the registry's (registry.selectors.block_resolve): the caller's own blocks,
then another organization's only by qualified id "<org-slug>/<block-id>", then the platform's
public blocks. A foreign block never answers to a plain name or id, public or granted.

LLM and optimizer blocks both run, under the one naming rule: an LLM wins only a tie within a rank
(an own LLM and an own optimizer of one name), so a foreign or platform LLM never takes a name the
caller gave its own optimizer. /v1/models lists one kind at a time (LLMs unless asked).

The hot path would otherwise query the database on every request. One indexed lookup per
name, never the organization's whole catalogue (which can hold 100,000 public blocks). A block
that is disabled, deleted or unshared stops resolving within BLOCK_CACHE_SECONDS; an unknown
name is cached too, so a flood of bad names costs one query per name per TTL.
"""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.db import close_old_connections

from inference.selectors import callable_blocks
from inference.ttlcache import AsyncTTLCache
from registry.models import Block, Organization
from registry.selectors import block_reference, block_resolve

BLOCK_CACHE_SECONDS = 2.0

_cache: AsyncTTLCache[Block | None] = AsyncTTLCache(ttl=BLOCK_CACHE_SECONDS, refresh_after=BLOCK_CACHE_SECONDS / 2)


def clear_block_cache() -> None:
    _cache.clear()


def _resolve(organization: Organization, model: str, names: bool) -> Block | None:
    close_old_connections()
    return block_resolve(organization=organization, reference=model, names=names, prefer_kind=Block.LLM,
                         queryset=callable_blocks(organization, kinds=(Block.LLM, Block.OPTIMIZER)))


def _plain_references(blocks: list[Block], organization: Organization) -> set[str]:
    """The plain ids and names that reach these blocks: the caller's own and the platform's public ones."""
    return {ref for b in blocks if block_reference(b, organization=organization) == b.block_id
            for ref in (b.block_id, b.name)}


def _list(organization: Organization, kind: str = Block.LLM) -> list[tuple[str, Block]]:
    """(the name that reaches it, block) for every block of `kind` /v1/models lists, by that name."""
    close_old_connections()
    # A block with no backend is a registry entry only: /v1/models lists what can answer.
    blocks = list(callable_blocks(organization, kinds=(kind,)).exclude(backend_type=""))
    # A plain id reaches a platform block only when none of the caller's own ids or names shadows it.
    own = {ref for b in blocks if b.organization_id == organization.pk for ref in (b.block_id, b.name)}
    # An LLM (runnable or not) wins a plain name from an optimizer of the same rank (_resolve): the
    # caller's own LLMs shadow its own optimizers, and any plainly reachable LLM a platform optimizer.
    llms = [] if kind == Block.LLM else list(callable_blocks(organization, kinds=(Block.LLM,)))
    own_llms = _plain_references([b for b in llms if b.organization_id == organization.pk], organization)
    plain_llms = _plain_references(llms, organization)
    listed = []
    for block in blocks:
        reference = block_reference(block, organization=organization)
        mine = block.organization_id == organization.pk
        if (reference in own_llms) if mine else (reference in own or reference in plain_llms):
            reference = block.qualified_id
        listed.append((reference, block))
    return sorted(listed, key=lambda pair: pair[0])


_aresolve = sync_to_async(_resolve, thread_sensitive=False)
list_blocks = sync_to_async(_list, thread_sensitive=False)


async def resolve_block(organization: Organization, model: str, *, names: bool = True) -> Block | None:
    """The enabled LLM or optimizer block that `model` names for this organization, if any: an own id
    or name, a qualified id, or a platform id or name (ids only with names=False, as fallbacks name
    blocks); an LLM before an optimizer."""
    return await _cache.get((organization.pk, model, names), lambda: _aresolve(organization, model, names))
