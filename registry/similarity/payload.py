"""The seed's similarity payload, read into a SimilarityRequest (QueryError, a 400, on bad input).

    {"body": {"values": {"matchType": "cluster", "kind": null, "rankingPolicyRule": {"values": {
        "executionMode": "code", "policyCodePath": "cosine",
        "settings": {"maxResults": 10, "enableCaching": true},
        "parameters": {"filterRule": {"clusterQuery": {...}}, "return": 5, "query": "..."}}}}}}

The task is the `task_description` (or `taskDescription`) LIKE conditions of the filterRule's
top-level AND (their `*` wildcards read as spaces), then `parameters.query`; every other condition
narrows the candidates. `maxResults` and `return` both cap the results (the smaller wins).
`enableCaching` (default true) lets the query's embedding come from this process's cache.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from registry.query import QueryError
from registry.similarity.policies import DEFAULT_POLICY, policy_for_path

DEFAULT_MAX_RESULTS = 10
MAX_RESULTS_LIMIT = 1000
TASK_VARIABLES = ("task_description", "taskDescription")


@dataclass
class SimilarityRequest:
    filter_node: Any
    task: str
    policy: str = DEFAULT_POLICY
    limit: int = DEFAULT_MAX_RESULTS
    kind: str | None = None
    caching: bool = True


def positive_int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_RESULTS_LIMIT:
        raise QueryError(f"{where}: must be an integer from 1 to {MAX_RESULTS_LIMIT}")
    return value


def split_task(node: Any, where: str) -> tuple[Any, list[str]]:
    """Take the task_description conditions out of the top-level AND of a filter."""
    if isinstance(node, dict) and "conditions" in node:
        if str(node.get("logicalOperator", "AND")).upper() != "AND":
            _refuse_nested_task(node["conditions"], where)
            return node, []
        rest, tasks = split_task(node["conditions"], f"{where}.conditions")
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
        return split_task([node], where)
    return node, []


def _refuse_nested_task(node: Any, where: str) -> None:
    if isinstance(node, dict):
        if node.get("variable") in TASK_VARIABLES:
            raise QueryError(f"{where}: task_description may only appear in the top-level AND of the filterRule")
        _refuse_nested_task(node.get("conditions"), where)
    elif isinstance(node, list):
        for item in node:
            _refuse_nested_task(item, where)


def filter_node(rule: Any) -> Any:
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
    policy = policy_for_path(_or_default(rule_values.get("policyCodePath"), DEFAULT_POLICY), f"{where}.policyCodePath")
    settings = _or_default(rule_values.get("settings"), {})
    parameters = _or_default(rule_values.get("parameters"), {})
    if not isinstance(settings, dict) or not isinstance(parameters, dict):
        raise QueryError(f"{where}: settings and parameters must be objects")
    limit = DEFAULT_MAX_RESULTS
    if "maxResults" in settings:
        limit = positive_int(settings["maxResults"], f"{where}.settings.maxResults")
    if "return" in parameters:
        limit = min(limit, positive_int(parameters["return"], f"{where}.parameters.return"))
    caching = settings.get("enableCaching", True)
    if not isinstance(caching, bool):
        raise QueryError(f"{where}.settings.enableCaching: must be true or false")

    node, tasks = split_task(filter_node(parameters.get("filterRule")), f"{where}.parameters.filterRule")
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
    return SimilarityRequest(filter_node=node, task=task, policy=policy, limit=limit, kind=kind, caching=caching)
