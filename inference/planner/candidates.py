"""Which blocks the planner may choose for a caller, and the tag ranking.

A candidate is a block the caller may run: visible to its organization (own, public or granted), enabled,
with a chat backend, allowed by the API key's allowed_models, and within the organization's policy rules
for this request (max_input_tokens, allowed_protocols...). Blocks are named as the caller names them
(registry.selectors.block_reference): a foreign block by its qualified id.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from django.db.models import QuerySet

from inference.backends.factory import EMBEDDING_ONLY_BACKENDS
from registry.asyncdb import in_db_thread
from registry.models import Block
from registry.principal import Principal
from registry.query import compile_node
from registry.selectors import block_is_visible_to, block_reference, block_resolve, blocks_callable
from registry.tenancy.constraints import check_constraints, effective_policy, request_protocols
from registry.tenancy.rules import rules_cache

# Tags mode reads at most this many tagged blocks (by id): a tag shared by more is too vague to rank on.
MAX_TAGGED = 1000
MAX_TERMS = 200
_WORD = re.compile(r"[\w.+#-]+")


@dataclass(frozen=True)
class Hit:
    """A ranked block: `score` in the ranking's own scale, `parts` what it is made of."""

    block: Block
    score: float
    parts: dict[str, float] = field(default_factory=dict)


def candidate_filter_rule(*, tag: str | None) -> list[dict[str, Any]]:
    """Enabled blocks with a chat backend (and the tag, if any), in the registry's query language."""
    rule: list[dict[str, Any]] = [
        {"variable": "enabled", "operator": "==", "value": True},
        {"variable": "backendType", "operator": "NOT IN", "value": ["", *EMBEDDING_ONLY_BACKENDS]},
    ]
    if tag:
        rule.append({"variable": "tags", "operator": "==", "value": tag})
    return rule


def runnable_blocks(principal: Principal, *, kind: str, tag: str | None = None) -> QuerySet[Block]:
    return blocks_callable(principal.organization, kinds=(kind,)).filter(compile_node(candidate_filter_rule(tag=tag)))


def searchable(block: Block, principal: Principal) -> dict[str, Any]:
    """The seed's searchable representation, with the id the caller uses for the block."""
    return {**block.searchable(), "id": block_reference(block, organization=principal.organization)}


def task_terms(text: str) -> list[str]:
    """Lower-case words of the task, and each pair of neighbours joined by '-' ("code review" also
    gives "code-review"), the forms tags are written in."""
    words = [w.strip(".-").lower() for w in _WORD.findall(text)]
    words = [w for w in words if w]
    terms = dict.fromkeys([*words, *(f"{a}-{b}" for a, b in zip(words, words[1:], strict=False))])
    return list(terms)[:MAX_TERMS]


def tag_ranking(*, principal: Principal, text: str, kind: str, tag: str | None) -> list[Hit]:
    """Blocks ranked by how many of their tags the task names (the requested tag counts as named):
    score = named tags / all the block's tags. Blocks naming none are left out."""
    terms = set(task_terms(text))
    if tag:
        terms.add(tag.lower())
    blocks = runnable_blocks(principal, kind=kind, tag=tag)
    if not tag:
        if not terms:
            return []
        blocks = blocks.filter(compile_node({"variable": "tags", "operator": "IN", "value": sorted(terms)}))
    hits = []
    for block in blocks[:MAX_TAGGED]:
        tags = {str(t).lower() for t in block.tags or []}
        named = tags & terms
        if named and principal.allows_block(block):
            hits.append(Hit(block=block, score=round(len(named) / len(tags), 4), parts={"tagsNamed": len(named)}))
    hits.sort(key=lambda h: (-h.parts["tagsNamed"], -h.score, h.block.block_id))
    return hits


_ablock_is_visible_to = in_db_thread(block_is_visible_to)


async def usable(principal: Principal, block: Block, *, request: Any = None, prompt_tokens: int = 0) -> bool:
    """Whether the caller may run `block` now, and (given a request) within its organization's policy."""
    if not (block.enabled and block.backend_type and block.backend_type not in EMBEDDING_ONLY_BACKENDS
            and principal.allows_block(block)):
        return False
    organization_id = principal.organization.pk
    rules = await rules_cache.get(organization_id)
    if not await _ablock_is_visible_to(block, principal.organization):
        return False
    if request is None:
        return True
    policy = effective_policy(org_rule=rules.org_rule, block_rule=rules.block_rules.get(block.pk, {}),
                              request_values={})
    return not check_constraints(policy=policy, request=request, prompt_tokens=prompt_tokens,
                                 protocols=request_protocols(request, None))


def resolve_reference(principal: Principal, reference: str, *, kind: str) -> Block | None:
    """The runnable block of `kind` a reference names for the caller (the gateway's naming rule), or None."""
    return block_resolve(organization=principal.organization, reference=reference,
                         queryset=runnable_blocks(principal, kind=kind))
