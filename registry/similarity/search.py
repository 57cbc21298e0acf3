"""Similarity search: the blocks a caller may see that fit a task, ranked by a registered policy.

`blocks_similar` is the Python entry point (the similarity API, the SDK and the planner call it);
`blocks_similar_to_payload` reads the seed's payload first. Candidates are exactly what
POST /api/blocks/query would return for the same filter (registry.selectors.blocks_list: own, public
and granted blocks), narrowed to an API key's allowed_models when a principal is given; nothing caps
them before the ranking.

Abstention (`similarity_abstains`): the best hit's cosine similarity below SIMILARITY_MIN_SCORE means
that no block fits the task. The threshold is calibrated on tests/registry/fixtures/relevance.json
(docs/planning.md).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db.models import QuerySet

from registry.models import Block, Organization
from registry.query import QueryError, compile_node
from registry.selectors import blocks_allowed_to_key, blocks_list
from registry.similarity.payload import (
    MAX_RESULTS_LIMIT,
    SimilarityRequest,
    filter_node,
    parse_similarity_payload,
    positive_int,
    split_task,
)
from registry.similarity.policies import DEFAULT_POLICY, POLICIES, Search, SimilarityHit, policy_for_path
from registry.similarity.services import embed_pending


def similarity_candidates(*, organization: Organization, filter_q: Any = None, kind: str | None = None,
                          principal: Any = None) -> QuerySet[Block]:
    candidates = blocks_list(organization=organization, kind=kind)
    if filter_q is not None:
        candidates = candidates.filter(filter_q)
    api_key = getattr(principal, "api_key", None)
    if api_key is not None:
        candidates = blocks_allowed_to_key(candidates, organization=organization, api_key=api_key)
    return candidates


def blocks_similar(*, organization: Organization, task: str, filter_rule: dict | list | None = None,
                   kind: str | None = None, policy: str = DEFAULT_POLICY, limit: int = 10, principal: Any = None,
                   caching: bool = True) -> list[SimilarityHit]:
    """The `limit` blocks that fit `task` best, best first. `filter_rule`: the seed's filterRule (or a
    bare condition group or list); its task_description conditions join `task`. `policy`: a registered
    policy's name or policyCodePath. `principal`: its API key's allowed_models narrow the candidates.
    Raises QueryError (a 400 for the APIs) on bad input."""
    node, tasks = split_task(filter_node(filter_rule), "filterRule")
    text = " ".join(t for t in [*tasks, task if isinstance(task, str) else ""] if t.strip())
    if not text.strip():
        raise QueryError("task: must be a non-empty string")
    if kind is not None and kind not in (Block.LLM, Block.OPTIMIZER):
        raise QueryError(f"kind: must be 'llm' or 'optimizer', got {kind!r}")
    request = SimilarityRequest(filter_node=node, task=text, policy=policy_for_path(policy, "policy"),
                                limit=positive_int(limit, "limit"), kind=kind, caching=caching)
    return _rank(organization=organization, request=request, principal=principal)


def blocks_similar_to_payload(*, organization: Organization, payload: Any,
                              principal: Any = None) -> tuple[SimilarityRequest, list[SimilarityHit]]:
    """The seed's similarity payload (registry.similarity.payload), ranked. Raises QueryError."""
    request = parse_similarity_payload(payload)
    return request, _rank(organization=organization, request=request, principal=principal)


def _rank(*, organization: Organization, request: SimilarityRequest, principal: Any) -> list[SimilarityHit]:
    where = "body.values.rankingPolicyRule.values.parameters.filterRule"
    candidates = similarity_candidates(organization=organization, filter_q=compile_node(request.filter_node, where),
                                       kind=request.kind, principal=principal)
    ranking = POLICIES[request.policy]
    if ranking.uses_vectors:
        embed_pending(candidates)
    search = Search(candidates=candidates, task=request.task, limit=min(request.limit, MAX_RESULTS_LIMIT),
                    organization=organization, caching=request.caching)
    return ranking.rank(search)


def similarity_abstains(hits: list[SimilarityHit]) -> bool:
    """Whether no block fits: no hit, or the best one's cosine similarity below SIMILARITY_MIN_SCORE.
    (A policy that reports no similarity, text-overlap, abstains only when it found nothing.)"""
    if not hits:
        return True
    best = max((hit.parts["similarity"] for hit in hits if "similarity" in hit.parts), default=None)
    return best is not None and best < settings.SIMILARITY_MIN_SCORE


def hit_to_dict(hit: SimilarityHit) -> dict[str, Any]:
    """A result as the similarity API and the SDK return it: the block, its score and the policy's parts."""
    return {**hit.block.to_dict(), "score": hit.score, "parts": dict(hit.parts)}
