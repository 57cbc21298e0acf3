"""INTERIM, deleted when the embedding search lands (registry.similarity, issue 10 items 1-3).

The same signature and result type as registry.similarity.blocks_similar, over the registry's existing
word-stem ranking, so the planner's similarity mode runs in the meantime. Its scores are on another scale
than the embeddings' cosine; nothing calibrated depends on them. similarity_mode.py is the only importer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from registry.models import Block, Organization
from registry.query import compile_node
from registry.ranking import MAX_CANDIDATES, stems, text_overlap
from registry.selectors import blocks_list


@dataclass(frozen=True)
class SimilarityHit:
    block: Block
    score: float
    parts: dict[str, float]


def blocks_similar(*, organization: Organization, task: str, filter_rule: Any = None, kind: str | None = None,
                   policy: str = "cosine", limit: int = 10, principal: Any = None) -> list[SimilarityHit]:
    candidates = blocks_list(organization=organization, kind=kind).filter(compile_node(filter_rule or []))
    task_stems = stems(task)
    scored = [(block, round(text_overlap(task_stems, block), 4)) for block in candidates[:MAX_CANDIDATES]]
    if principal is not None:
        scored = [(block, score) for block, score in scored if principal.allows_block(block)]
    scored.sort(key=lambda pair: (-pair[1], pair[0].block_id))
    return [SimilarityHit(block=block, score=score, parts={"similarity": score}) for block, score in scored[:limit]]
