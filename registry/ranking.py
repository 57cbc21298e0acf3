"""Similarity search: rank the blocks a filter selects by how well they fit a task description.

The seed lets a client name a ranking policy by `policyCodePath`. Running code a caller
points at is exactly what this server must never do, so the name can only pick one of the
built-in policies below, by its own name or by a path the operator maps to it
(SIMILARITY_POLICY_PATHS); anything else is refused.

Built-in policy `text-overlap` (the default): both texts are lower-cased and split into
words; words shorter than 2 letters and common English stop words are dropped; each word
is reduced to its first 5 letters (a crude stem, so "summarize" meets "summarization").
With T the task's stems, D the stems of the block's name and description, and G those of
its tags:

    score = (|T ∩ D| + 2·|T ∩ G|) / (3·|T|)          (0 … 1; tags count double)

Blocks scoring 0 are left out; ties go to the block id in alphabetical order.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from django.conf import settings as django_settings
from django.db.models import Q

from registry.query import QueryError, compile_node

DEFAULT_POLICY = "text-overlap"
DEFAULT_MAX_RESULTS = 10
MAX_RESULTS_LIMIT = 1000
# Ranking happens over at most this many candidates (the first by block id); narrow the
# filterRule to rank a larger registry precisely.
MAX_CANDIDATES = 5000
TASK_VARIABLES = ("task_description", "taskDescription")

STOP_WORDS = frozenset(
    "a an and are as at be by for from has have in into is it its of on or that the this to "
    "was were will with your you me my our can please".split()
)
WORD_RE = re.compile(r"[a-z0-9]+")


def stems(text: str) -> set[str]:
    return {w[:5] for w in WORD_RE.findall(text.lower()) if len(w) >= 2 and w not in STOP_WORDS}


def text_overlap(task: set[str], block) -> float:
    if not task:
        return 0.0
    described = stems(f"{block.name} {block.description}")
    tagged = stems(" ".join(str(t) for t in block.tags))
    return (len(task & described) + 2 * len(task & tagged)) / (3 * len(task))


POLICIES: dict[str, Callable[[set[str], Any], float]] = {"text-overlap": text_overlap}
POLICY_ALIASES = {"text-overlap": "text-overlap", "builtin:text-overlap": "text-overlap"}


def policy_named(path: Any) -> str | None:
    """The built-in policy `path` names: one of POLICY_ALIASES, or an operator's mapped path."""
    if not isinstance(path, str):
        return None
    policy = POLICY_ALIASES.get(path) or django_settings.SIMILARITY_POLICY_PATHS.get(path)
    return policy if policy in POLICIES else None


@dataclass
class SimilarityRequest:
    filter: Q
    task: str
    policy: str = DEFAULT_POLICY
    limit: int = DEFAULT_MAX_RESULTS
    kind: str | None = None


def _positive_int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_RESULTS_LIMIT:
        raise QueryError(f"{where}: must be an integer from 1 to {MAX_RESULTS_LIMIT}")
    return value


def _split_task(node: Any, where: str) -> tuple[Any, list[str]]:
    """Take the task_description conditions out of the top-level AND of a filter."""
    if isinstance(node, dict) and "conditions" in node:
        if str(node.get("logicalOperator", "AND")).upper() != "AND":
            _refuse_nested_task(node["conditions"], where)
            return node, []
        rest, tasks = _split_task(node["conditions"], f"{where}.conditions")
        return {**node, "conditions": rest}, tasks
    if isinstance(node, list):
        rest, tasks = [], []
        for index, item in enumerate(node):
            if isinstance(item, dict) and item.get("variable") in TASK_VARIABLES:
                value = item.get("value")
                if not isinstance(value, str) or not value.strip():
                    raise QueryError(f"{where}[{index}].value: the task description must be a non-empty string")
                tasks.append(value.replace("*", " "))
            else:
                _refuse_nested_task(item, f"{where}[{index}]")
                rest.append(item)
        return rest, tasks
    if isinstance(node, dict) and node.get("variable") in TASK_VARIABLES:
        return _split_task([node], where)
    return node, []


def _refuse_nested_task(node: Any, where: str) -> None:
    if isinstance(node, dict):
        if node.get("variable") in TASK_VARIABLES:
            raise QueryError(f"{where}: task_description may only appear in the top-level AND of the filterRule")
        _refuse_nested_task(node.get("conditions"), where)
    elif isinstance(node, list):
        for item in node:
            _refuse_nested_task(item, where)


def _filter_node(rule: Any) -> Any:
    """filterRule may be the seed's filter ({clusterQuery}), a {filter: {clusterQuery}},
    a {logicalOperator, conditions} group, or a list of conditions."""
    if rule is None:
        return []
    if isinstance(rule, dict) and isinstance(rule.get("filter"), dict):
        rule = rule["filter"]
    if isinstance(rule, dict) and "clusterQuery" in rule:
        return rule["clusterQuery"]
    return rule


def _or_default(value: Any, default: Any) -> Any:
    return default if value is None else value


def parse_similarity_payload(payload: Any) -> SimilarityRequest:
    if not isinstance(payload, dict):
        raise QueryError("similarity: expected a JSON object")
    body = payload.get("body")
    values = body.get("values") if isinstance(body, dict) else None
    if not isinstance(values, dict):
        raise QueryError("body.values: missing; expected the similarity payload")
    rule = values.get("rankingPolicyRule")
    rule_values = rule.get("values") if isinstance(rule, dict) else None
    if not isinstance(rule_values, dict):
        raise QueryError("body.values.rankingPolicyRule.values: missing or not an object")
    where = "body.values.rankingPolicyRule.values"

    mode = rule_values.get("executionMode", "code")
    if mode != "code":
        raise QueryError(f"{where}.executionMode: '{mode}' is not supported; use 'code'")
    # Only null means "the default": false, "" or [] are a caller's mistake, refused (as /api/schema/ says).
    path = _or_default(rule_values.get("policyCodePath"), DEFAULT_POLICY)
    policy = policy_named(path)
    if policy is None:
        raise QueryError(
            f"{where}.policyCodePath: {path!r} is not a built-in policy (user-supplied policy code is "
            f"never executed); use one of: {', '.join([*POLICY_ALIASES, *django_settings.SIMILARITY_POLICY_PATHS])}"
        )
    settings = _or_default(rule_values.get("settings"), {})
    parameters = _or_default(rule_values.get("parameters"), {})
    if not isinstance(settings, dict) or not isinstance(parameters, dict):
        raise QueryError(f"{where}: settings and parameters must be objects")
    limit = DEFAULT_MAX_RESULTS
    if "maxResults" in settings:
        limit = _positive_int(settings["maxResults"], f"{where}.settings.maxResults")
    if "return" in parameters:
        limit = min(limit, _positive_int(parameters["return"], f"{where}.parameters.return"))

    node, tasks = _split_task(_filter_node(parameters.get("filterRule")), f"{where}.parameters.filterRule")
    query = parameters.get("query")
    if query is not None:
        if not isinstance(query, str):
            raise QueryError(f"{where}.parameters.query: must be a string")
        tasks.append(query)
    task = " ".join(t for t in tasks if t.strip())
    if not task.strip():
        raise QueryError(
            f"{where}: no task description; add a task_description LIKE condition to "
            "parameters.filterRule or set parameters.query"
        )
    kind = values.get("kind")
    if kind is not None and kind not in ("llm", "optimizer"):
        raise QueryError(f"body.values.kind: must be 'llm' or 'optimizer', got {kind!r}")
    return SimilarityRequest(
        filter=compile_node(node, f"{where}.parameters.filterRule"),
        task=task,
        policy=policy,
        limit=limit,
        kind=kind,
    )


def rank_blocks(request: SimilarityRequest, candidates: Iterable) -> list[tuple[Any, float]]:
    score = POLICIES[request.policy]
    task = stems(request.task)
    scored = [(block, round(score(task, block), 4)) for block in list(candidates[:MAX_CANDIDATES])]
    ranked = sorted((pair for pair in scored if pair[1] > 0), key=lambda p: (-p[1], p[0].block_id))
    return ranked[: request.limit]
