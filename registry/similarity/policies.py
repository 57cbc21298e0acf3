"""Ranking policies: named, registered classes. A request picks one by name (`policyCodePath`); no code
is ever loaded from a request, whatever the path says.

- `cosine` (the default): cosine similarity of the task's embedding and the block's, ranked by the
  vector store (registry.similarity.vectors). parts: similarity.
- `hybrid`: reciprocal rank fusion (RRF) of the vector ranking and a lexical BM25 ranking over the
  same candidates: score = Σ 1/(SIMILARITY_RRF_K + rank) over the two lists, each list its
  SIMILARITY_HYBRID_DEPTH best (or `limit`, if larger). parts: similarity, lexical (BM25), vectorRank,
  lexicalRank (0: not in that list).
- `performance`: similarity less penalties for the block's measured p50 latency and error rate (the
  inference metrics, as the caller may see them, over SIMILARITY_PERFORMANCE_WINDOW):
  score = similarity − W_latency·p50/(p50 + LATENCY_REF_MS) − W_errors·error_rate. An unmeasured block
  counts as p50 = LATENCY_REF_MS (penalty 0.5·W_latency) with no errors. parts: similarity, latency
  (the 0 … 1 latency penalty), errors (the error rate), and latencyP50Ms / requests when measured.
  Exact, with no candidate cap: rows are read best-similarity first until no unread block (whose
  score is at most its similarity) could still enter the top `limit`.
- `text-overlap`: the stem overlap that ranked before embeddings existed (registry.similarity.lexical),
  kept for callers that name it. parts: overlap.

Scores are rounded to 6 decimals (text-overlap to 4, as it always was).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from django.conf import settings
from django.db.models import QuerySet

from registry.embeddings import embed_queries
from registry.models import Block, Organization
from registry.query import QueryError
from registry.similarity.lexical import bm25_scores, lexical_matches, stems, text_overlap
from registry.similarity.performance import block_performance
from registry.similarity.vectors import nearest, similarities

DEFAULT_POLICY = "cosine"
# Paths the seed's own examples send: they mean "the default policy", not code to load.
SEED_POLICY_PATHS = {"policies/similarity_policy.zip": DEFAULT_POLICY}
BUILTIN_PREFIX = "builtin:"
SCORE_DECIMALS = 6


@dataclass(frozen=True)
class SimilarityHit:
    block: Block
    score: float
    parts: dict[str, float]


class _QueryCache:
    """Embeddings of recent task texts (an LRU per process): the same prompt is embedded once."""

    def __init__(self) -> None:
        self._items: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, text: str, compute: Callable[[str], np.ndarray]) -> np.ndarray:
        with self._lock:
            if text in self._items:
                self._items.move_to_end(text)
                return self._items[text]
        vector = compute(text)
        with self._lock:
            self._items[text] = vector
            while len(self._items) > settings.SIMILARITY_QUERY_CACHE_SIZE:
                self._items.popitem(last=False)
        return vector

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


query_cache = _QueryCache()


def query_embedding(text: str, *, cached: bool = True) -> np.ndarray:
    compute = lambda t: embed_queries([t])[0]  # noqa: E731
    return query_cache.get(text, compute) if cached else compute(text)


@dataclass
class Search:
    """One ranking to do: the candidates (filter, kind and visibility applied), the task, how many."""

    candidates: QuerySet[Block]
    task: str
    limit: int
    organization: Organization
    caching: bool = True
    _vector: np.ndarray | None = field(default=None, repr=False)

    def query_vector(self) -> np.ndarray:
        if self._vector is None:
            self._vector = query_embedding(self.task, cached=self.caching)
        return self._vector


def _rounded(value: float, decimals: int = SCORE_DECIMALS) -> float:
    return round(float(value), decimals)


def _order(items: list[tuple[Block, float, dict[str, float]]], limit: int) -> list[SimilarityHit]:
    items.sort(key=lambda item: (-item[1], item[0].block_id, item[0].pk))
    return [SimilarityHit(block=block, score=_rounded(score), parts=parts) for block, score, parts in items[:limit]]


class RankingPolicy:
    name: ClassVar[str]
    # Whether the policy reads embeddings (a search embeds its pending candidates first).
    uses_vectors: ClassVar[bool] = True

    def rank(self, search: Search) -> list[SimilarityHit]:
        raise NotImplementedError


POLICIES: dict[str, RankingPolicy] = {}


def register(cls: type[RankingPolicy]) -> type[RankingPolicy]:
    POLICIES[cls.name] = cls()
    return cls


@register
class CosinePolicy(RankingPolicy):
    name = "cosine"

    def rank(self, search: Search) -> list[SimilarityHit]:
        pairs = nearest(search.candidates, search.query_vector(), search.limit)
        return _order([(block, sim, {"similarity": _rounded(sim)}) for block, sim in pairs], search.limit)


@register
class HybridPolicy(RankingPolicy):
    name = "hybrid"

    def rank(self, search: Search) -> list[SimilarityHit]:
        depth = max(search.limit, settings.SIMILARITY_HYBRID_DEPTH)
        k = settings.SIMILARITY_RRF_K
        query = search.query_vector()
        vector_list = nearest(search.candidates, query, depth)
        task = stems(search.task)
        rows = lexical_matches(search.candidates, task)
        bm25 = bm25_scores(task, rows, search.candidates.count()) if rows else {}
        by_pk = {row.pk: row for row in rows}
        lexical_list = sorted(bm25, key=lambda pk: (-bm25[pk], by_pk[pk].block_id, pk))[:depth]

        blocks = {block.pk: block for block, _ in vector_list}
        similarity = {block.pk: sim for block, sim in vector_list}
        missing = [pk for pk in lexical_list if pk not in blocks]
        if missing:
            blocks.update({block.pk: block for block in search.candidates.filter(pk__in=missing).order_by()})
            similarity.update(similarities(missing, query))
        vector_rank = {block.pk: rank for rank, (block, _) in enumerate(vector_list, 1)}
        lexical_rank = {pk: rank for rank, pk in enumerate(lexical_list, 1)}
        items = []
        for pk, block in blocks.items():
            score = sum(1.0 / (k + ranks[pk]) for ranks in (vector_rank, lexical_rank) if pk in ranks)
            parts = {"similarity": _rounded(similarity.get(pk, 0.0)), "lexical": _rounded(bm25.get(pk, 0.0)),
                     "vectorRank": float(vector_rank.get(pk, 0)), "lexicalRank": float(lexical_rank.get(pk, 0))}
            items.append((block, score, parts))
        return _order(items, search.limit)


@register
class PerformancePolicy(RankingPolicy):
    name = "performance"

    def rank(self, search: Search) -> list[SimilarityHit]:
        query = search.query_vector()
        fetch = max(4 * search.limit, 20)
        while True:
            pairs = nearest(search.candidates, query, fetch)
            measured = block_performance(viewer=search.organization, block_pks=[b.pk for b, _ in pairs])
            items = [self._blend(block, sim, measured.get(block.pk)) for block, sim in pairs]
            hits = _order(items, search.limit)
            exhausted = len(pairs) < fetch
            # An unread block scores at most its similarity, which is at most the last one read.
            settled = len(hits) == search.limit and pairs and hits[-1].score >= pairs[-1][1]
            if exhausted or settled:
                return hits
            fetch *= 4

    @staticmethod
    def _blend(block: Block, sim: float, measured: Any) -> tuple[Block, float, dict[str, float]]:
        reference = settings.SIMILARITY_PERFORMANCE_LATENCY_REF_MS
        p50 = measured.p50_ms if measured is not None else None
        latency = p50 / (p50 + reference) if p50 is not None else 0.5
        errors = (measured.error_rate or 0.0) if measured is not None else 0.0
        score = (sim - settings.SIMILARITY_PERFORMANCE_LATENCY_WEIGHT * latency
                 - settings.SIMILARITY_PERFORMANCE_ERROR_WEIGHT * errors)
        parts = {"similarity": _rounded(sim), "latency": _rounded(latency), "errors": _rounded(errors)}
        if p50 is not None:
            parts["latencyP50Ms"] = float(p50)
        if measured is not None:
            parts["requests"] = float(measured.requests)
        return block, score, parts


@register
class TextOverlapPolicy(RankingPolicy):
    name = "text-overlap"
    uses_vectors = False

    def rank(self, search: Search) -> list[SimilarityHit]:
        task = stems(search.task)
        scored = {row.pk: (row, round(text_overlap(task, row), 4)) for row in lexical_matches(search.candidates, task)}
        scored = {pk: pair for pk, pair in scored.items() if pair[1] > 0}
        best = sorted(scored.values(), key=lambda pair: (-pair[1], pair[0].block_id, pair[0].pk))[: search.limit]
        blocks = {b.pk: b for b in search.candidates.filter(pk__in=[row.pk for row, _ in best]).order_by()}
        items = [(blocks[row.pk], score, {"overlap": score}) for row, score in best if row.pk in blocks]
        items.sort(key=lambda item: (-item[1], item[0].block_id, item[0].pk))
        return [SimilarityHit(block=block, score=score, parts=parts) for block, score, parts in items]


def policy_names() -> list[str]:
    """Every string policyCodePath accepts (for messages and /api/schema/)."""
    names = list(POLICIES)
    return [*names, *(BUILTIN_PREFIX + name for name in names), *SEED_POLICY_PATHS]


def policy_for_path(path: Any, where: str = "policyCodePath") -> str:
    """The registered policy a policyCodePath names: its name, `builtin:<name>`, or a seed example path."""
    if isinstance(path, str):
        name = path.removeprefix(BUILTIN_PREFIX)
        if name in POLICIES:
            return name
        if path in SEED_POLICY_PATHS:
            return SEED_POLICY_PATHS[path]
    raise QueryError(f"{where}: {path!r} is not a built-in policy (user-supplied policy code is never "
                     f"executed); use one of: {', '.join(policy_names())}")
