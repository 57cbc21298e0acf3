"""The relevance fixture (tests/registry/fixtures/relevance.json) and what the similarity search makes of it.

Shared by the relevance tests and bench/similarity.py. 48 blocks with the descriptions a team would
write; 56 tasks phrased as a user would ask, sharing few words with the right block; 20 tasks that
no block fits.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from registry.models import Block, Organization

FIXTURE = Path(__file__).parent / "fixtures" / "relevance.json"


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


def measure_relevance(rank) -> Relevance:
    """`rank(task) -> (ids best first, abstains)` over the fixture's tasks."""
    fixture = relevance_fixture()
    top1 = top3 = abstained_fitting = 0
    misses = []
    for item in fixture["tasks"]:
        ids, abstains = rank(item["task"])
        top1 += bool(ids) and ids[0] == item["expect"]
        top3 += item["expect"] in ids[:3]
        abstained_fitting += abstains
        if not ids or ids[0] != item["expect"]:
            misses.append(f"{item['task']!r}: {ids[:3]} (expected {item['expect']})")
    abstained_no_fit = sum(rank(task)[1] for task in fixture["no_fit"])
    tasks = len(fixture["tasks"])
    return Relevance(top1=top1 / tasks, top3=top3 / tasks, abstain_no_fit=abstained_no_fit / len(fixture["no_fit"]),
                     abstain_fitting=abstained_fitting / tasks, misses=misses)


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
