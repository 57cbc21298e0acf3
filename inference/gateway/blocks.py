"""What /v1/models lists for one organization, each block by the name that reaches it.

Which block a `model` names, and whether the caller may run it, is tenancy's one access check
(registry.tenancy.access.block_access), under the registry's naming rule: the caller's own
blocks, then another organization's only by qualified id "<org-slug>/<block-id>", then the
platform's public blocks. This module lists under that same rule.

LLM and optimizer blocks both run, under the one naming rule: an LLM wins only a tie within a rank
(an own LLM and an own optimizer of one name), so a foreign or platform LLM never takes a name the
caller gave its own optimizer. /v1/models lists one kind at a time (LLMs unless asked).
"""

from __future__ import annotations

from registry.asyncdb import in_db_thread
from registry.models import Block, Organization
from registry.selectors import block_reference, blocks_callable


def _plain_references(blocks: list[Block], organization: Organization) -> set[str]:
    """The plain ids and names that reach these blocks: the caller's own and the platform's public ones."""
    return {ref for b in blocks if block_reference(b, organization=organization) == b.block_id
            for ref in (b.block_id, b.name)}


@in_db_thread
def list_blocks(organization: Organization, kind: str = Block.LLM) -> list[tuple[str, Block]]:
    """(the name that reaches it, block) for every block of `kind` /v1/models lists, by that name."""
    # A block with no backend is a registry entry only: /v1/models lists what can answer.
    blocks = list(blocks_callable(organization, kinds=(kind,)).exclude(backend_type=""))
    # A plain id reaches a platform block only when none of the caller's own ids or names shadows it.
    own = {ref for b in blocks if b.organization_id == organization.pk for ref in (b.block_id, b.name)}
    # An LLM (runnable or not) wins a plain name from an optimizer of the same rank (access.resolve_block):
    # the caller's own LLMs shadow its own optimizers, and any plainly reachable LLM a platform optimizer.
    llms = [] if kind == Block.LLM else list(blocks_callable(organization, kinds=(Block.LLM,)))
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
