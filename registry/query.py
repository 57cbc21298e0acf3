"""The block query language: conditions `{variable, operator, value}` compiled to a Django Q.

Every condition becomes SQL (see registry/lookups.py); nothing is filtered in Python.
Bad input raises QueryError with a message that names the condition and the problem;
the API turns it into a 400.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, time
from typing import Any

from django.db.models import F, Q
from django.db.models.fields.json import KeyTransform
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from registry import lookups

OPERATORS = ("==", "!=", "IN", "NOT IN", ">", ">=", "<", "<=", "LIKE")
LOGICAL_OPERATORS = ("AND", "OR")
MAX_DEPTH = 10
MAX_CONDITIONS = 500
MAX_LIST_VALUES = 1000
MAX_PATH_KEYS = 10
JSON_KEY_RE = re.compile(r"^[A-Za-z0-9_\-]{1,100}$")


class QueryError(ValueError):
    """A query the compiler cannot translate; the message is safe to show the caller."""


@dataclass(frozen=True)
class Variable:
    column: str
    type: str  # text | bool | datetime | list | json


TEXT_OPS = {"==", "!=", "IN", "NOT IN", ">", ">=", "<", "<=", "LIKE"}
TYPE_OPERATORS = {
    "text": TEXT_OPS,
    "bool": {"==", "!="},
    "datetime": {"==", "!=", ">", ">=", "<", "<="},
    "list": {"==", "!=", "IN", "NOT IN", "LIKE"},
    "json": set(OPERATORS),
}

VARIABLES: dict[str, Variable] = {
    "id": Variable("block_id", "text"),
    "block_id": Variable("block_id", "text"),
    "blockId": Variable("block_id", "text"),
    "name": Variable("name", "text"),
    "kind": Variable("kind", "text"),
    "description": Variable("description", "text"),
    "blockMetadata.description": Variable("description", "text"),
    "visibility": Variable("visibility", "text"),
    "organization": Variable("organization__slug", "text"),
    "backend.type": Variable("backend_type", "text"),
    "backendType": Variable("backend_type", "text"),
    "enabled": Variable("enabled", "bool"),
    "createdAt": Variable("created_at", "datetime"),
    "created_at": Variable("created_at", "datetime"),
    "updatedAt": Variable("updated_at", "datetime"),
    "updated_at": Variable("updated_at", "datetime"),
    "tags": Variable("tags", "list"),
    "blockMetadata.tags": Variable("tags", "list"),
    "inputProtocols": Variable("input_protocols", "list"),
    "inputProtocol": Variable("input_protocols", "list"),
    "input_protocols": Variable("input_protocols", "list"),
    "outputProtocols": Variable("output_protocols", "list"),
    "outputProtocol": Variable("output_protocols", "list"),
    "output_protocols": Variable("output_protocols", "list"),
}
# `metadata.<path>` and `blockMetadata.<path>` reach into Block.metadata.
JSON_ROOTS = ("metadata", "blockMetadata")


def like_pattern(value: str) -> str:
    """`*` is the only wildcard; SQL's own % and _ match themselves."""
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%")


def resolve_variable(name: Any, where: str) -> tuple[Variable, list[str]]:
    """The column (and, for metadata, the key path) a variable names."""
    if not isinstance(name, str) or not name:
        raise QueryError(f"{where}: 'variable' must be a non-empty string")
    if name in VARIABLES:
        return VARIABLES[name], []
    root, _, rest = name.partition(".")
    if root in JSON_ROOTS and rest:
        keys = rest.split(".")
        if len(keys) > MAX_PATH_KEYS:
            raise QueryError(f"{where}: variable '{name}' is nested deeper than {MAX_PATH_KEYS} keys")
        for key in keys:
            if not JSON_KEY_RE.match(key):
                raise QueryError(
                    f"{where}: variable '{name}' has an invalid key '{key}' "
                    "(letters, digits, '_' and '-' only)"
                )
        return Variable("metadata", "json"), keys
    known = ", ".join(sorted({*VARIABLES, "metadata.<path>", "blockMetadata.<path>"}))
    hint = f"; did you mean 'metadata.{name}'?" if "." in name else ""
    raise QueryError(f"{where}: unknown variable '{name}' (unknown root '{root}'){hint}. Known: {known}")


def _normalize_operator(operator: Any, where: str) -> str:
    if not isinstance(operator, str):
        raise QueryError(f"{where}: 'operator' must be a string, one of {', '.join(OPERATORS)}")
    normalized = " ".join(operator.strip().upper().split())
    if normalized not in OPERATORS:
        raise QueryError(f"{where}: unknown operator '{operator}'; use one of {', '.join(OPERATORS)}")
    return normalized


def _scalar(value: Any, where: str, variable: str) -> Any:
    if value is None or not isinstance(value, lookups.SCALAR_TYPES):
        raise QueryError(f"{where}: value for '{variable}' must be a string, number or boolean")
    return value


def _string(value: Any, where: str, variable: str, operator: str) -> str:
    if not isinstance(value, str):
        raise QueryError(f"{where}: operator {operator} on '{variable}' needs a string value")
    return value


def _value_list(value: Any, where: str, variable: str, operator: str, item=None) -> list[Any]:
    if not isinstance(value, list):
        raise QueryError(f"{where}: operator {operator} on '{variable}' needs a list value")
    if len(value) > MAX_LIST_VALUES:
        raise QueryError(f"{where}: operator {operator} takes at most {MAX_LIST_VALUES} values")
    check = item or (lambda v: _scalar(v, where, variable))
    return [check(v) for v in value]


def _datetime(value: Any, where: str, variable: str) -> datetime:
    parsed = None
    if isinstance(value, str):
        parsed = parse_datetime(value)
        if parsed is None and (day := parse_date(value)) is not None:
            parsed = datetime.combine(day, time.min)
    if parsed is None:
        raise QueryError(f"{where}: value for '{variable}' must be an ISO 8601 date or date-time string")
    if timezone.is_naive(parsed):
        parsed = timezone.make_aware(parsed, UTC)
    return parsed


def _json_expression(keys: list[str]):
    expression: Any = F("metadata")
    for key in keys:
        expression = KeyTransform(key, expression)
    return expression


COMPARE_SUFFIX = {">": "gt", ">=": "gte", "<": "lt", "<=": "lte"}
JSON_COMPARE = {
    ">": lookups.JsonGreaterThan,
    ">=": lookups.JsonGreaterThanOrEqual,
    "<": lookups.JsonLessThan,
    "<=": lookups.JsonLessThanOrEqual,
}


def compile_condition(condition: dict, where: str) -> Q:
    for key in ("variable", "operator"):
        if key not in condition:
            raise QueryError(f"{where}: malformed condition, missing '{key}' (expected {{variable, operator, value}})")
    if "value" not in condition:
        raise QueryError(f"{where}: malformed condition, missing 'value'")
    name = condition["variable"]
    variable, keys = resolve_variable(name, where)
    operator = _normalize_operator(condition["operator"], where)
    value = condition["value"]
    if operator not in TYPE_OPERATORS[variable.type]:
        allowed = ", ".join(o for o in OPERATORS if o in TYPE_OPERATORS[variable.type])
        raise QueryError(f"{where}: operator {operator} is not supported for '{name}'; use one of {allowed}")

    negate = operator in ("!=", "NOT IN")
    col = variable.column
    if variable.type == "text":
        if operator in ("==", "!="):
            q = Q(**{col: _string(value, where, name, operator)})
        elif operator in ("IN", "NOT IN"):
            values = _value_list(value, where, name, operator, lambda v: _string(v, where, name, operator))
            q = Q(**{f"{col}__in": values})
        elif operator == "LIKE":
            q = Q(**{f"{col}__sb_ilike": like_pattern(_string(value, where, name, operator))})
        else:
            q = Q(**{f"{col}__{COMPARE_SUFFIX[operator]}": _string(value, where, name, operator)})
    elif variable.type == "bool":
        if not isinstance(value, bool):
            raise QueryError(f"{where}: value for '{name}' must be true or false")
        q = Q(**{col: value})
    elif variable.type == "datetime":
        moment = _datetime(value, where, name)
        q = Q(**{col: moment}) if operator in ("==", "!=") else Q(**{f"{col}__{COMPARE_SUFFIX[operator]}": moment})
    else:
        target = F(col) if variable.type == "list" else _json_expression(keys)
        if variable.type == "list" and value is None:
            raise QueryError(f"{where}: value for '{name}' must be a string, number or boolean, or a list")
        q = _compile_json(target, operator, value, where, name)
    return ~q if negate else q


def _compile_json(target, operator: str, value: Any, where: str, name: str) -> Q:
    if operator in ("==", "!="):
        if isinstance(value, list | dict) or value is None:
            # A whole JSON value: exact equality of the stored list/object/null.
            return Q(lookups.JsonEqual(target, value))
        return Q(lookups.HasElement(target, _scalar(value, where, name)))
    if operator in ("IN", "NOT IN"):
        return Q(lookups.HasAnyElement(target, _value_list(value, where, name, operator)))
    if operator == "LIKE":
        return Q(lookups.ElementILike(target, like_pattern(_string(value, where, name, operator))))
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise QueryError(f"{where}: operator {operator} on '{name}' needs a number or string value")
    return Q(JSON_COMPARE[operator](target, value))


def compile_node(node: Any, where: str = "query", depth: int = 0, counter: list[int] | None = None) -> Q:
    """A condition, a `{logicalOperator, conditions}` group, or a list (an AND)."""
    counter = counter if counter is not None else [0]
    if depth > MAX_DEPTH:
        raise QueryError(f"{where}: nested deeper than {MAX_DEPTH} levels")
    if isinstance(node, list):
        return _combine(node, "AND", where, depth, counter)
    if not isinstance(node, dict):
        raise QueryError(f"{where}: malformed condition, expected an object or a list")
    if "conditions" in node:
        logical = node.get("logicalOperator", "AND")
        if not isinstance(logical, str) or logical.strip().upper() not in LOGICAL_OPERATORS:
            raise QueryError(f"{where}.logicalOperator: must be AND or OR, got {logical!r}")
        if not isinstance(node["conditions"], list):
            raise QueryError(f"{where}.conditions: must be a list")
        return _combine(node["conditions"], logical.strip().upper(), f"{where}.conditions", depth, counter)
    if "variable" in node or "operator" in node:
        counter[0] += 1
        if counter[0] > MAX_CONDITIONS:
            raise QueryError(f"query has more than {MAX_CONDITIONS} conditions")
        return compile_condition(node, where)
    raise QueryError(
        f"{where}: malformed condition, expected {{variable, operator, value}} "
        "or {logicalOperator, conditions}"
    )


def _combine(items: list, logical: str, where: str, depth: int, counter: list[int]) -> Q:
    combined = Q()
    for index, item in enumerate(items):
        q = compile_node(item, f"{where}[{index}]", depth + 1, counter)
        if index == 0:
            combined = q
        elif logical == "AND":
            combined &= q
        else:
            combined |= q
    return combined


@dataclass
class ParsedQuery:
    node: Any
    kind: str | None = None


def _simple_dict_node(query: dict) -> list[dict]:
    """The SDK's `{"tags": ["qa"], "inputProtocols": ["text/plain"]}`: lists are IN, scalars ==."""
    conditions = []
    for variable, value in query.items():
        operator = "IN" if isinstance(value, list) else "=="
        conditions.append({"variable": variable, "operator": operator, "value": value})
    return conditions


def parse_filter_payload(payload: Any) -> ParsedQuery:
    """Accept the seed's filter payload, a bare `{conditions: [...]}`, or a simple dict."""
    if isinstance(payload, list):
        return ParsedQuery(payload)
    if not isinstance(payload, dict):
        raise QueryError("query: expected a JSON object")
    kind = payload.get("kind")
    if "body" in payload:
        values = _dig(payload, ("body", "values"))
        match_type = values.get("matchType", "cluster")
        if match_type != "cluster":
            raise QueryError(f"body.values.matchType: '{match_type}' is not supported; use 'cluster'")
        flt = values.get("filter")
        if not isinstance(flt, dict) or "clusterQuery" not in flt:
            raise QueryError("body.values.filter.clusterQuery: missing; expected the filter payload")
        kind = values.get("kind", kind)
        return ParsedQuery(flt["clusterQuery"], _kind(kind))
    if "conditions" in payload:
        node = {k: payload[k] for k in ("logicalOperator", "conditions") if k in payload}
        return ParsedQuery(node, _kind(kind))
    return ParsedQuery(_simple_dict_node(payload))


def _kind(kind: Any) -> str | None:
    if kind is None:
        return None
    if kind not in ("llm", "optimizer"):
        raise QueryError(f"kind: must be 'llm' or 'optimizer', got {kind!r}")
    return kind


def _dig(payload: dict, path: tuple[str, ...]) -> dict:
    node: Any = payload
    for depth, key in enumerate(path):
        if not isinstance(node, dict) or not isinstance(node.get(key), dict):
            raise QueryError(f"{'.'.join(path[: depth + 1])}: missing or not an object")
        node = node[key]
    return node


def compile_query(payload: Any) -> tuple[Q, str | None]:
    parsed = parse_filter_payload(payload)
    return compile_node(parsed.node), parsed.kind
