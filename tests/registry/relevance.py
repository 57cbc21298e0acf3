"""The relevance fixture (tests/registry/fixtures/relevance.json) and what the similarity search makes of it.

Shared by the relevance tests and bench/similarity.py. 48 blocks with the descriptions a team would
write; 100 tasks phrased as a user would ask, sharing few words with the right block; 32 tasks that
no block fits.

The tasks (and the no-fit tasks) are split in two by position: the even-numbered ones are the
calibration half, the odd-numbered ones the held-out half. The abstention threshold is chosen on the
calibration half only (calibrated_min_score); the issue's targets are asserted on the held-out half,
which nothing was tuned on. The split is fixed and depends on no result; as most blocks' tasks sit
next to each other in the fixture, most blocks have a task in each half.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar

from registry.models import Block, Organization

FIXTURE = Path(__file__).parent / "fixtures" / "relevance.json"
# The share of fitting tasks the planner may abstain on (the issue: at most 5 %).
FITTING_ABSTENTION_BUDGET = 0.05

Half = Literal["calibration", "held-out", "all"]
T = TypeVar("T")


def half_of(items: Sequence[T], half: Half) -> list[T]:
    """The calibration half (even positions), the held-out half (odd positions), or everything."""
    if half == "all":
        return list(items)
    return list(items[0::2] if half == "calibration" else items[1::2])


def calibrated_min_score(fitting_best: Sequence[float], budget: float = FITTING_ABSTENTION_BUDGET) -> float:
    """The abstention threshold from the best similarity of each fitting calibration task: the highest
    threshold that abstains on at most `budget` of them, placed midway between the last score it
    abstains on and the first it keeps (so neither sits on the edge)."""
    ordered = sorted(fitting_best)
    allowed = int(budget * len(ordered))
    if allowed == 0:
        return ordered[0]  # abstains below the lowest: on none of them
    return (ordered[allowed - 1] + ordered[allowed]) / 2


def relevance_fixture() -> dict:
    return json.loads(FIXTURE.read_text())


def load_relevance_blocks(organization: Organization) -> list[Block]:
    """The fixture's blocks, created (and so marked pending for embedding) in `organization`."""
    return [
        Block.objects.create(
            organization=organization, block_id=item["id"], name=item["name"], kind=item.get("kind", Block.LLM),
            description=item["description"], tags=item["tags"], input_protocols=item["inputProtocols"],
            output_protocols=item["outputProtocols"], backend_type="python",
            backend_config={"class": "inference.backends.examples.ReverseTextLLM"},
        )
        for item in relevance_fixture()["blocks"]
    ]


@dataclass
class Relevance:
    top1: float
    top3: float
    abstain_no_fit: float
    abstain_fitting: float
    misses: list[str]


def measure_relevance(rank: Callable[[str], tuple[list[str], bool]], half: Half = "all") -> Relevance:
    """`rank(task) -> (ids best first, abstains)` over one half of the fixture's tasks (or all of them)."""
    fixture = relevance_fixture()
    fitting, no_fit = half_of(fixture["tasks"], half), half_of(fixture["no_fit"], half)
    top1 = top3 = abstained_fitting = 0
    misses = []
    for item in fitting:
        ids, abstains = rank(item["task"])
        top1 += bool(ids) and ids[0] == item["expect"]
        top3 += item["expect"] in ids[:3]
        abstained_fitting += abstains
        if not ids or ids[0] != item["expect"]:
            misses.append(f"{item['task']!r}: {ids[:3]} (expected {item['expect']})")
    abstained_no_fit = sum(rank(task)[1] for task in no_fit)
    tasks = len(fitting)
    return Relevance(top1=top1 / tasks, top3=top3 / tasks, abstain_no_fit=abstained_no_fit / len(no_fit),
                     abstain_fitting=abstained_fitting / tasks, misses=misses)


def fitting_tasks(half: Half) -> list[str]:
    return [item["task"] for item in half_of(relevance_fixture()["tasks"], half)]


# Filters the cross-database comparison runs every task under, beside no filter at all.
COMPARISON_FILTERS: dict[str, list[dict]] = {
    "none": [],
    "text in": [{"variable": "inputProtocols", "operator": "==", "value": "text/plain"}],
    "tags or": [{"logicalOperator": "OR", "conditions": [
        {"variable": "tags", "operator": "IN", "value": ["code", "writing", "vision"]},
        {"variable": "description", "operator": "LIKE", "value": "*text*"}]}],
}


def rank_everything(organization: Organization, *, policy: str = "cosine", limit: int = 5) -> dict[str, list]:
    """Every fixture task (fitting and not) under every comparison filter: [[id, score], ...] best first."""
    from registry.similarity import blocks_similar

    fixture = relevance_fixture()
    tasks = [item["task"] for item in fixture["tasks"]] + fixture["no_fit"]
    out = {}
    for name, conditions in COMPARISON_FILTERS.items():
        for task in tasks:
            hits = blocks_similar(organization=organization, task=task, filter_rule={"conditions": conditions},
                                  policy=policy, limit=limit)
            out[f"{name} | {task}"] = [[hit.block.block_id, hit.score] for hit in hits]
    return out
