"""Word matching: the lexical leg of the `hybrid` policy and the legacy `text-overlap` policy.

Texts are lower-cased and split into words; words shorter than 2 letters and common English stop
words are dropped; each word is cut to its first 5 letters (a crude stem, so "summarize" meets
"summarization"). Only candidates sharing at least one stem with the task can score, so the database
is asked for exactly those (a case-insensitive LIKE per stem over name, description and tags):
nothing is capped, and nothing else is read.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

from django.db.models import Q, QuerySet

from registry.models import Block
from registry.query import like_pattern

STOP_WORDS = frozenset(
    "a an and are as at be by for from has have in into is it its of on or that the this to "
    "was were will with your you me my our can please".split()
)
WORD_RE = re.compile(r"[a-z0-9]+")
# BM25's usual constants.
BM25_K1 = 1.2
BM25_B = 0.75


def stems(text: str) -> set[str]:
    return set(stem_list(text))


def stem_list(text: str) -> list[str]:
    return [w[:5] for w in WORD_RE.findall(str(text).lower()) if len(w) >= 2 and w not in STOP_WORDS]


@dataclass(frozen=True)
class LexicalRow:
    pk: int
    block_id: str
    name: str
    description: str
    tags: list[Any]

    @property
    def words(self) -> list[str]:
        return stem_list(f"{self.name} {self.description} {' '.join(map(str, self.tags or []))}")


def lexical_matches(candidates: QuerySet[Block], task_stems: set[str]) -> list[LexicalRow]:
    """The candidates whose name, description or tags contain one of the stems (a superset of those
    that score above 0), read in one query."""
    if not task_stems:
        return []
    match = Q()
    for stem in sorted(task_stems):
        pattern = f"%{like_pattern(stem)}%"
        match |= Q(name__sb_ilike=pattern) | Q(description__sb_ilike=pattern) | Q(tags__sb_elem_ilike=pattern)
    rows = candidates.filter(match).order_by().values_list("pk", "block_id", "name", "description", "tags")
    return [LexicalRow(*row) for row in rows]


def text_overlap(task: set[str], row: LexicalRow) -> float:
    """The legacy score: (|T ∩ D| + 2·|T ∩ G|) / (3·|T|), tags counting double (0 … 1)."""
    if not task:
        return 0.0
    described = stems(f"{row.name} {row.description}")
    tagged = stems(" ".join(str(t) for t in row.tags or []))
    return (len(task & described) + 2 * len(task & tagged)) / (3 * len(task))


def bm25_scores(task: set[str], rows: list[LexicalRow], corpus_size: int) -> dict[int, float]:
    """Okapi BM25 of each row for the task's stems; document frequencies from the matching rows,
    `corpus_size` the number of candidates (rows that match no stem score 0 and are not listed)."""
    documents = {row.pk: row.words for row in rows}
    frequency: Counter[str] = Counter()
    for words in documents.values():
        frequency.update(set(words) & task)
    total = max(corpus_size, len(documents), 1)
    average = (sum(len(words) for words in documents.values()) / len(documents)) if documents else 1.0
    scores: dict[int, float] = {}
    for pk, words in documents.items():
        counts = Counter(words)
        score = 0.0
        for stem in task:
            tf = counts.get(stem, 0)
            if tf:
                idf = math.log(1 + (total - frequency[stem] + 0.5) / (frequency[stem] + 0.5))
                score += idf * tf * (BM25_K1 + 1) / (tf + BM25_K1 * (1 - BM25_B + BM25_B * len(words) / average))
        if score > 0:
            scores[pk] = score
    return scores
