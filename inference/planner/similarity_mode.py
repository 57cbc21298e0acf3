"""The planner's one call into the similarity search, and its rule for "nothing fits".

Every ranking by meaning the planner uses (the `similarity` mode, the search step of `plan` mode and of
POST /api/planner/select) goes through `similar_blocks`, so the search behind it changes here only.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

from inference.planner.candidates import Hit, candidate_filter_rule
from registry.principal import Principal
from registry.similarity import blocks_similar

DEFAULT_POLICY = "cosine"


def similar_blocks(*, principal: Principal, task: str, kind: str, tag: str | None, limit: int,
                   policy: str = DEFAULT_POLICY, filter_rule: list[dict[str, Any]] | None = None) -> list[Hit]:
    """The blocks of `kind` the caller may run, best first, by how well they fit `task` (synchronous:
    it embeds the task and queries the database). `filter_rule`: extra conditions (ids, for instance)."""
    if not task.strip():
        return []  # A conversation with no words in it fits nothing: the planner abstains.
    # The search takes a filter rule as the similarity API does: one AND group of the query language.
    rule = {"logicalOperator": "AND", "conditions": [*candidate_filter_rule(tag=tag), *(filter_rule or [])]}
    hits = blocks_similar(organization=principal.organization, task=task, filter_rule=rule, kind=kind,
                          policy=policy, limit=limit, principal=principal)
    return [Hit(block=hit.block, score=float(hit.score), parts=dict(hit.parts)) for hit in hits]


def min_score(configured: float | None) -> float:
    """The organization's own threshold, else the server's calibrated one (SIMILARITY_MIN_SCORE, the one the
    similarity API abstains under: docs/planning.md)."""
    return float(settings.SIMILARITY_MIN_SCORE) if configured is None else configured


def fits(hit: Hit, configured: float | None) -> bool:
    """Whether the best hit is good enough to run; below the threshold the planner abstains."""
    return hit.score >= min_score(configured)
