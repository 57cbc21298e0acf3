"""Access: may this caller run the block it names? Checked once per request, here.

`block_access` resolves the `model` a caller sends under the registry's naming rule
(registry.selectors.block_resolve: its own id or name, then "<org-slug>/<block-id>" for a public
or granted foreign block, then the platform's public blocks), among the enabled LLM and optimizer
blocks its organization may see, then checks the key's allowed_models. Its answer, a BlockAccess,
is what `admit` (admission.py) takes: every transport (/v1 HTTP, the WebSocket chat,
/v1/models/<id>) calls `block_access` once, and admission does not check access again. Fallbacks
go through the same rule (admission.py).

A refusal reads the same wherever it comes from (`model` is the name the caller sent):
- 404 model_not_found "The model 'x' does not exist or you do not have access to it." (a foreign
  private block, a disabled one and a missing one are the same answer);
- 403 model_not_allowed "This API key is not allowed to use the model 'x'."

The resolution is cached per (organization, model) for BLOCK_CACHE_SECONDS: one indexed lookup per
name, never the organization's whole catalogue (which can hold 100,000 public blocks); an unknown
name is cached too, so a flood of bad names costs one query per name per TTL. A change to a block
or a grant clears the cache at once in the process that made it (signals.py); other processes see
a block disabled, deleted or unshared within BLOCK_CACHE_SECONDS.
"""

from __future__ import annotations

from dataclasses import dataclass

from registry.asyncdb import in_db_thread
from registry.models import Block, Organization
from registry.principal import Principal
from registry.selectors import block_resolve, blocks_callable
from registry.tenancy.policy import GateError
from registry.ttlcache import AsyncTTLCache

BLOCK_CACHE_SECONDS = 2.0


@dataclass(frozen=True)
class BlockAccess:
    """`principal` may run `block`, which it called `model`. Made by `block_access`."""

    principal: Principal
    block: Block
    model: str


def model_not_found(model: str, *, param: str | None = "model") -> GateError:
    return GateError(f"The model '{model}' does not exist or you do not have access to it.", status=404,
                     code="model_not_found", rule="visibility", param=param)


def model_not_allowed(model: str) -> GateError:
    return GateError(f"This API key is not allowed to use the model '{model}'.", status=403,
                     code="model_not_allowed", rule="allowed_models", param="model")


def key_refusal(principal: Principal, block: Block, model: str) -> GateError | None:
    """The key's allowed_models on a block the caller can see: None when it may run it."""
    return None if principal.allows_block(block) else model_not_allowed(model)


_cache: AsyncTTLCache[Block | None] = AsyncTTLCache(ttl=BLOCK_CACHE_SECONDS, refresh_after=BLOCK_CACHE_SECONDS / 2)


def clear_block_cache() -> None:
    _cache.clear()


@in_db_thread
def _resolve(organization: Organization, model: str, names: bool) -> Block | None:
    return block_resolve(organization=organization, reference=model, names=names, prefer_kind=Block.LLM,
                         queryset=blocks_callable(organization))


async def resolve_block(organization: Organization, model: str, *, names: bool = True) -> Block | None:
    """The enabled LLM or optimizer block `model` names for this organization, if any (ids only with
    names=False, as fallbacks name blocks); an LLM before an optimizer of the same rank."""
    return await _cache.get((organization.pk, model, names), lambda: _resolve(organization, model, names))


async def block_access(*, principal: Principal, model: str, names: bool = True) -> BlockAccess:
    """The one access check: raises GateError 404 model_not_found or 403 model_not_allowed."""
    block = await resolve_block(principal.organization, model, names=names)
    if block is None:
        raise model_not_found(model)
    refusal = key_refusal(principal, block, model)
    if refusal is not None:
        raise refusal
    return BlockAccess(principal=principal, block=block, model=model)
