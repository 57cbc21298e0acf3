"""JSON Schemas of the query language (registry/query.py) and the similarity payload
(registry/similarity/payload.py),
for /api/schema/. Built from the compiler's own tables, so the schema and the compiler cannot drift.

The schema is exact in both directions: what it admits the compiler accepts, and what the compiler
refuses the schema does not admit (schemathesis checks both, tests/gateway/test_schema_conformance.py).
Keys the compiler ignores (anything beside `conditions` in a group, beside `variable`/`operator`/`value`
in a condition) stay allowed. Two limits are not stated: nesting past MAX_DEPTH levels and more than
MAX_CONDITIONS conditions in all (JSON Schema cannot count across levels); both are a 400.
"""

from __future__ import annotations

from typing import Any

from registry import lookups
from registry.query import (
    JSON_KEY_RE,
    JSON_ROOTS,
    LOGICAL_OPERATORS,
    MAX_LIST_VALUES,
    MAX_PATH_KEYS,
    TYPE_OPERATORS,
    VARIABLES,
)
from registry.similarity.payload import MAX_RESULTS_LIMIT, TASK_VARIABLES
from registry.similarity.policies import DEFAULT_POLICY, policy_names

NODE_REF = "#/components/schemas/QueryNode"
KINDS = ["llm", "optimizer"]
KIND = {"type": "string", "enum": [*KINDS, None], "nullable": True, "description": "null: any kind"}

_SCALAR = {"oneOf": [{"type": "string"}, {"type": "number"}, {"type": "boolean"}]}
assert set(lookups.SCALAR_TYPES) == {str, int, float, bool}, "update _SCALAR with lookups.SCALAR_TYPES"
_DATE = {"anyOf": [{"type": "string", "format": "date-time"}, {"type": "string", "format": "date"}]}
_KEY = JSON_KEY_RE.pattern.strip("^$")
METADATA_PATH = f"^({'|'.join(JSON_ROOTS)})\\.{_KEY}(\\.{_KEY}){{0,{MAX_PATH_KEYS - 1}}}$"


def _list_of(item: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "maxItems": MAX_LIST_VALUES, "items": item}


def _value_schemas(var_type: str) -> list[tuple[list[str], dict[str, Any]]]:
    """(operators, the value they take) for one variable type, as registry.query.compile_condition reads them."""
    if var_type == "text":
        return [(["==", "!=", ">", ">=", "<", "<=", "LIKE"], {"type": "string"}),
                (["IN", "NOT IN"], _list_of({"type": "string"}))]
    if var_type == "bool":
        return [(["==", "!="], {"type": "boolean"})]
    if var_type == "datetime":
        return [(["==", "!=", ">", ">=", "<", "<="], _DATE)]
    # list and json: == takes a scalar (contains) or a whole list/object (equality); json also null.
    # json: any value, null too (it equals a stored null); list: anything but null.
    equal = {} if var_type == "json" else {"oneOf": [{"type": "string"}, {"type": "number"}, {"type": "boolean"},
                                                      {"type": "array"}, {"type": "object"}]}
    schemas = [(["==", "!="], equal), (["IN", "NOT IN"], _list_of(_SCALAR)), (["LIKE"], {"type": "string"})]
    if var_type == "json":
        schemas.append(([">", ">=", "<", "<="], {"oneOf": [{"type": "number"}, {"type": "string"}]}))
    return schemas


def _variable_names(var_type: str) -> dict[str, Any]:
    names = sorted(name for name, variable in VARIABLES.items() if variable.type == var_type)
    return {"type": "string", "pattern": METADATA_PATH} if var_type == "json" else {"enum": names}


def _conditions() -> list[dict[str, Any]]:
    out = []
    for var_type, operators in TYPE_OPERATORS.items():
        for ops, value in _value_schemas(var_type):
            assert set(ops) <= operators, (var_type, ops)
            out.append({"type": "object", "required": ["variable", "operator", "value"],
                        "properties": {"variable": _variable_names(var_type), "operator": {"enum": ops},
                                       "value": value},
                        # An object with `conditions` is read as a group, whatever else it holds.
                        "not": {"required": ["conditions"]}})
    return out


def query_node_schema() -> dict[str, Any]:
    """A condition, a {logicalOperator, conditions} group, or a list (an AND)."""
    return {
        "description": "A condition {variable, operator, value}, a group {logicalOperator, conditions}, or a "
                       "list of nodes (an AND). Operators are case-insensitive on the wire; the schema lists "
                       "their canonical spelling.",
        "anyOf": [
            *_conditions(),
            {"type": "object", "required": ["conditions"],
             "properties": {"logicalOperator": {"enum": list(LOGICAL_OPERATORS)},
                            "conditions": {"type": "array", "items": {"$ref": NODE_REF}}}},
            {"type": "array", "items": {"$ref": NODE_REF}},
        ],
    }


def _simple_dict() -> dict[str, Any]:
    """The SDK's {"tags": ["qa"], "kind": "llm"}: a list means IN, anything else ==."""
    by_type = {t: {ops[0]: value for ops, value in _value_schemas(t)} for t in TYPE_OPERATORS}

    def simple(var_type: str) -> dict[str, Any]:
        equal, in_list = by_type[var_type]["=="], by_type[var_type].get("IN")
        scalar_equal = {"not": {"type": "array"}, **equal} if in_list else equal
        return {"anyOf": [scalar_equal, in_list]} if in_list else {"not": {"type": "array"}, **equal}

    return {
        "type": "object",
        "description": "Each key a variable, each value its == value (a list: IN), all ANDed.",
        "properties": {name: simple(variable.type) for name, variable in VARIABLES.items()},
        # Metadata paths (metadata.<a.b>) are keys too; OpenAPI 3.0 has no patternProperties to say so.
        "additionalProperties": False,
    }


def block_query_schema() -> dict[str, Any]:
    kind = KIND
    return {
        "description": "The seed's filter payload, a bare group with an optional kind, the SDK's simple "
                       "dict, or a list of conditions. See the README for the variables and operators.",
        "anyOf": [
            {"type": "object", "required": ["body"], "properties": {"body": {
                "type": "object", "required": ["values"], "properties": {"values": {
                    "type": "object", "required": ["filter"],
                    "properties": {"matchType": {"enum": ["cluster"]}, "kind": kind,
                                   "filter": {"type": "object", "required": ["clusterQuery"],
                                              "properties": {"clusterQuery": {"$ref": NODE_REF}}}}}}},
                            # Read only when body.values names no kind.
                            "kind": kind}},
            {"type": "object", "required": ["conditions"], "not": {"required": ["body"]},
             "properties": {"logicalOperator": {"enum": list(LOGICAL_OPERATORS)}, "kind": kind,
                            "conditions": {"type": "array", "items": {"$ref": NODE_REF}}}},
            _simple_dict(),
            {"type": "array", "items": {"$ref": NODE_REF}},
        ],
    }


def similarity_schema() -> dict[str, Any]:
    count = {"type": "integer", "minimum": 1, "maximum": MAX_RESULTS_LIMIT}
    filter_rule = {"nullable": True, "anyOf": [
        {"type": "object", "required": ["filter"],
         "properties": {"filter": {"type": "object", "required": ["clusterQuery"],
                                   "properties": {"clusterQuery": {"$ref": NODE_REF}}}}},
        {"type": "object", "required": ["clusterQuery"], "not": {"required": ["filter"]},
         "properties": {"clusterQuery": {"$ref": NODE_REF}}},
    ]}
    return {
        "type": "object", "required": ["body"],
        "description": "The seed's similarity payload. policyCodePath names a built-in policy; code is never "
                       "loaded from the request. The task description is parameters.query; the seed's "
                       f"{' / '.join(TASK_VARIABLES)} LIKE condition in the filterRule's top-level AND is read "
                       "as one too (the schema states only parameters.query).",
        "properties": {"body": {"type": "object", "required": ["values"], "properties": {"values": {
            "type": "object", "required": ["rankingPolicyRule"],
            "properties": {
                "matchType": {"description": "Not read (the seed sends \"cluster\")."},
                "kind": KIND,
                "rankingPolicyRule": {"type": "object", "required": ["values"], "properties": {"values": {
                    "type": "object", "required": ["parameters"],
                    "properties": {
                        "executionMode": {"enum": ["code"]},
                        # null or left out: the default policy.
                        "policyCodePath": {"type": "string", "enum": [*policy_names(), None], "nullable": True,
                                           "description": f"A registered policy (default {DEFAULT_POLICY}); the "
                                                          "seed's example path means the default."},
                        "settings": {"type": "object", "nullable": True, "properties": {
                            "maxResults": count, "enableCaching": {"type": "boolean"}}},
                        "parameters": {"type": "object", "required": ["query"], "properties": {
                            "query": {"type": "string", "pattern": "\\S"},
                            "return": count,
                            "filterRule": filter_rule,
                        }},
                    }}}},
            }}}}},
    }
