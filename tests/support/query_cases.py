"""The query language's cases, run on both databases: tests/registry/test_query.py on PostgreSQL and
tests/registry/test_sqlite_lookups.py on SQLite (the embedded default), against the same catalog.

Every case holds on both databases, with the same expected answer: one list, so the two cannot drift
apart again. (Where they once had, the stricter expectation was kept; none differs between them today.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from registry.models import Block, Organization
from registry.selectors import blocks_query

# Four blocks of one organization (acme), every field spelled out so both databases hold the same rows.
CATALOG: list[dict[str, Any]] = [
    {"block_id": "sum-a", "name": "alpha", "kind": Block.LLM, "description": "Summarizes research papers",
     "tags": ["summarization", "text"], "input_protocols": ["text/plain"], "output_protocols": ["text/plain"],
     "metadata": {"gpus": {"memory": 24, "count": 2}, "region": "eu", "languages": ["en", "de"], "flag": True}},
    {"block_id": "qa-b", "name": "bravo", "kind": Block.LLM, "description": "Question answering, 100% accurate_ish",
     "tags": ["qa"], "input_protocols": ["text/plain", "application/json"], "output_protocols": ["text/plain"],
     "metadata": {"gpus": {"memory": 8}, "region": "us", "languages": ["en"], "flag": 1}},
    {"block_id": "opt-c", "name": "charlie", "kind": Block.OPTIMIZER, "description": "Prompt optimizer",
     "tags": ["prompt", "optimizer"], "input_protocols": ["application/json"],
     "output_protocols": ["application/json"], "metadata": {"gpus": {"memory": "16"}}, "enabled": False},
    {"block_id": "img-d", "name": "delta", "kind": Block.LLM, "description": "Captions images, accurate-ish",
     "tags": [], "input_protocols": ["image/png"], "output_protocols": ["text/plain"], "metadata": {}},
]
BACKEND = {"backend_type": "python", "backend_config": {"class": "inference.backends.examples.ReverseTextLLM"}}
EVERY = ["img-d", "opt-c", "qa-b", "sum-a"]


def catalog_create(organization: Organization) -> dict[str, Block]:
    blocks = [Block.objects.create(organization=organization, **BACKEND, **fields) for fields in CATALOG]
    return {b.block_id: b for b in blocks}


def matching(organization: Organization, payload: Any) -> list[str]:
    """The ids of the blocks the query finds, sorted."""
    return sorted(b.block_id for b in blocks_query(organization=organization, payload=payload))


@dataclass(frozen=True)
class QueryCase:
    id: str
    payload: Any
    expected: list[str]


def where(variable: str, operator: str, value: Any, expected: list[str]) -> QueryCase:
    """One condition."""
    return QueryCase(id=f"{variable} {operator} {value!r}",
                     payload={"conditions": [{"variable": variable, "operator": operator, "value": value}]},
                     expected=expected)


SCALAR_CASES = [
    where("id", "==", "qa-b", ["qa-b"]),
    where("block_id", "!=", "qa-b", ["img-d", "opt-c", "sum-a"]),
    where("id", "IN", ["qa-b", "img-d", "nope"], ["img-d", "qa-b"]),
    where("id", "NOT IN", ["qa-b", "img-d"], ["opt-c", "sum-a"]),
    where("name", ">", "bravo", ["img-d", "opt-c"]),
    where("name", ">=", "bravo", ["img-d", "opt-c", "qa-b"]),
    where("name", "<", "bravo", ["sum-a"]),
    where("name", "<=", "bravo", ["qa-b", "sum-a"]),
    where("kind", "==", "optimizer", ["opt-c"]),
    where("kind", "!=", "optimizer", ["img-d", "qa-b", "sum-a"]),
    where("description", "LIKE", "*RESEARCH*", ["sum-a"]),
    where("blockMetadata.description", "LIKE", "prompt*", ["opt-c"]),
    where("description", "LIKE", "prompt optimizer", ["opt-c"]),
    where("description", "LIKE", "prompt", []),
    where("enabled", "==", False, ["opt-c"]),
    where("enabled", "!=", False, ["img-d", "qa-b", "sum-a"]),
    where("organization", "==", "acme", EVERY),
    where("backend.type", "==", "python", EVERY),
    where("visibility", "==", "public", []),
    where("createdAt", ">", "2000-01-01", EVERY),
    where("createdAt", "<", "2000-01-01T00:00:00Z", []),
    where("updatedAt", "<=", "2999-01-01", EVERY),
]

LIST_CASES = [
    where("tags", "==", "qa", ["qa-b"]),
    where("tags", "!=", "qa", ["img-d", "opt-c", "sum-a"]),
    where("tags", "IN", ["qa", "prompt"], ["opt-c", "qa-b"]),
    where("tags", "NOT IN", ["qa", "prompt"], ["img-d", "sum-a"]),
    where("tags", "LIKE", "SUMM*", ["sum-a"]),
    where("tags", "==", ["qa"], ["qa-b"]),
    where("blockMetadata.tags", "IN", ["text"], ["sum-a"]),
    where("inputProtocols", "==", "text/plain", ["qa-b", "sum-a"]),
    where("inputProtocol", "==", "application/json", ["opt-c", "qa-b"]),
    where("input_protocols", "IN", ["image/png", "application/json"], ["img-d", "opt-c", "qa-b"]),
    where("outputProtocols", "NOT IN", ["text/plain"], ["opt-c"]),
    where("outputProtocol", "LIKE", "application/*", ["opt-c"]),
    where("tags", "IN", [], []),
    where("tags", "NOT IN", [], EVERY),
]

METADATA_CASES = [
    # Numbers compare as numbers; the string "16" in opt-c is not a number.
    where("metadata.gpus.memory", ">", 16, ["sum-a"]),
    where("metadata.gpus.memory", ">=", 8, ["qa-b", "sum-a"]),
    where("metadata.gpus.memory", "<", 10, ["qa-b"]),
    where("metadata.gpus.memory", "<=", 24.0, ["qa-b", "sum-a"]),
    where("metadata.gpus.memory", "==", 24, ["sum-a"]),
    where("metadata.gpus.memory", "==", "16", ["opt-c"]),
    where("metadata.gpus.memory", "==", 16, []),
    where("metadata.gpus.memory", ">", "1", ["opt-c"]),
    where("blockMetadata.gpus.count", "IN", [2, 3], ["sum-a"]),
    where("metadata.region", "==", "eu", ["sum-a"]),
    where("blockMetadata.region", "IN", ["eu", "us"], ["qa-b", "sum-a"]),
    # A missing key is "not equal", not unknown.
    where("metadata.region", "!=", "eu", ["img-d", "opt-c", "qa-b"]),
    where("metadata.region", "NOT IN", ["eu", "us"], ["img-d", "opt-c"]),
    where("metadata.region", "LIKE", "E*", ["sum-a"]),
    where("metadata.languages", "==", "de", ["sum-a"]),
    where("metadata.languages", "IN", ["de", "fr"], ["sum-a"]),
    where("metadata.languages", "LIKE", "e*", ["qa-b", "sum-a"]),
    where("metadata.languages", "==", ["en"], ["qa-b"]),
    where("metadata.gpus", "==", {"memory": 8}, ["qa-b"]),
    where("metadata.languages.1", "==", "de", ["sum-a"]),
    where("metadata.languages.0", "IN", ["en"], ["qa-b", "sum-a"]),
    # JSON keeps true and 1 apart, and so does the query.
    where("metadata.flag", "==", True, ["sum-a"]),
    where("metadata.flag", "==", 1, ["qa-b"]),
]

NESTED = {"logicalOperator": "AND", "conditions": [
    {"logicalOperator": "OR", "conditions": [
        {"variable": "tags", "operator": "==", "value": "qa"},
        {"variable": "kind", "operator": "==", "value": "optimizer"},
        {"logicalOperator": "AND", "conditions": [
            {"variable": "inputProtocols", "operator": "==", "value": "image/png"},
            {"variable": "enabled", "operator": "==", "value": True},
        ]},
    ]},
    {"variable": "outputProtocols", "operator": "!=", "value": "image/png"},
]}

SHAPE_CASES = [
    QueryCase("a list of conditions is an AND", {"conditions": [
        {"variable": "tags", "operator": "IN", "value": ["qa", "summarization"]},
        {"variable": "metadata.region", "operator": "==", "value": "us"},
    ]}, ["qa-b"]),
    QueryCase("AND and OR groups nest", NESTED, ["img-d", "opt-c", "qa-b"]),
    QueryCase("a lower-case logicalOperator counts", {**NESTED, "conditions": [
        {**NESTED["conditions"][0], "logicalOperator": "and"}, NESTED["conditions"][1]]}, []),
    QueryCase("an OR of a condition and an AND group", {"logicalOperator": "OR", "conditions": [
        {"variable": "tags", "operator": "==", "value": "qa"},
        {"logicalOperator": "AND", "conditions": [
            {"variable": "kind", "operator": "==", "value": "optimizer"},
            {"variable": "inputProtocols", "operator": "IN", "value": ["application/json"]}]}]}, ["opt-c", "qa-b"]),
    QueryCase("the seed's filter payload", {"body": {"values": {"matchType": "cluster", "filter": {"clusterQuery": {
        "logicalOperator": "AND",
        "conditions": [
            {"variable": "tags", "operator": "IN", "value": ["qa"]},
            {"variable": "inputProtocols", "operator": "==", "value": "text/plain"},
        ],
    }}}}}, ["qa-b"]),
    QueryCase("a bare conditions object with kind", {"logicalOperator": "OR", "kind": "llm", "conditions": [
        {"variable": "tags", "operator": "==", "value": "prompt"},
        {"variable": "tags", "operator": "==", "value": "qa"},
    ]}, ["qa-b"]),
    QueryCase("the SDK's simple dict", {"tags": ["qa", "summarization"], "inputProtocols": ["text/plain"]},
              ["qa-b", "sum-a"]),
    QueryCase("the SDK's simple dict with kind", {"kind": "optimizer"}, ["opt-c"]),
    QueryCase("no conditions match everything visible", {"conditions": []}, EVERY),
    # LIKE's only wildcard is *: % and _ match themselves.
    where("description", "LIKE", "*accurate_ish*", ["qa-b"]),
    where("description", "LIKE", "*100%*", ["qa-b"]),
    where("description", "LIKE", "*1_0*", []),
    # Operators are case and space insensitive.
    where("tags", "not  in", ["qa", "prompt"], ["img-d", "sum-a"]),
    where("description", "like", "*images*", ["img-d"]),
]

CASES = SCALAR_CASES + LIST_CASES + METADATA_CASES + SHAPE_CASES


def case_ids(cases: list[QueryCase]) -> list[str]:
    return [case.id for case in cases]
