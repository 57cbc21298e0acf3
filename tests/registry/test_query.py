"""The query compiler against PostgreSQL: every operator, list and scalar fields, metadata
paths, nesting, the three payload shapes, and every way a query can be wrong."""

from __future__ import annotations

import pytest

from registry.query import QueryError, compile_query, like_pattern
from registry.selectors import blocks_query

pytestmark = pytest.mark.django_db


def ids(org, payload) -> list[str]:
    return sorted(b.block_id for b in blocks_query(organization=org, payload=payload))


def where(org, variable, operator, value) -> list[str]:
    return ids(org, {"conditions": [{"variable": variable, "operator": operator, "value": value}]})


@pytest.mark.parametrize(
    ("variable", "operator", "value", "expected"),
    [
        ("id", "==", "qa-b", ["qa-b"]),
        ("block_id", "!=", "qa-b", ["img-d", "opt-c", "sum-a"]),
        ("id", "IN", ["qa-b", "img-d", "nope"], ["img-d", "qa-b"]),
        ("id", "NOT IN", ["qa-b", "img-d"], ["opt-c", "sum-a"]),
        ("name", ">", "bravo", ["img-d", "opt-c"]),
        ("name", ">=", "bravo", ["img-d", "opt-c", "qa-b"]),
        ("name", "<", "bravo", ["sum-a"]),
        ("name", "<=", "bravo", ["qa-b", "sum-a"]),
        ("kind", "==", "optimizer", ["opt-c"]),
        ("kind", "!=", "optimizer", ["img-d", "qa-b", "sum-a"]),
        ("description", "LIKE", "*RESEARCH*", ["sum-a"]),
        ("blockMetadata.description", "LIKE", "prompt*", ["opt-c"]),
        ("description", "LIKE", "prompt optimizer", ["opt-c"]),
        ("description", "LIKE", "prompt", []),
        ("enabled", "==", False, ["opt-c"]),
        ("enabled", "!=", False, ["img-d", "qa-b", "sum-a"]),
        ("organization", "==", "acme", ["img-d", "opt-c", "qa-b", "sum-a"]),
        ("backend.type", "==", "python", ["img-d", "opt-c", "qa-b", "sum-a"]),
        ("visibility", "==", "public", []),
        ("createdAt", ">", "2000-01-01", ["img-d", "opt-c", "qa-b", "sum-a"]),
        ("createdAt", "<", "2000-01-01T00:00:00Z", []),
        ("updatedAt", "<=", "2999-01-01", ["img-d", "opt-c", "qa-b", "sum-a"]),
    ],
)
def test_it_compiles_each_operator_on_scalar_columns(org, catalog, variable, operator, value, expected):
    assert where(org, variable, operator, value) == expected


@pytest.mark.parametrize(
    ("variable", "operator", "value", "expected"),
    [
        ("tags", "==", "qa", ["qa-b"]),
        ("tags", "!=", "qa", ["img-d", "opt-c", "sum-a"]),
        ("tags", "IN", ["qa", "prompt"], ["opt-c", "qa-b"]),
        ("tags", "NOT IN", ["qa", "prompt"], ["img-d", "sum-a"]),
        ("tags", "LIKE", "SUMM*", ["sum-a"]),
        ("tags", "==", ["qa"], ["qa-b"]),
        ("blockMetadata.tags", "IN", ["text"], ["sum-a"]),
        ("inputProtocols", "==", "text/plain", ["qa-b", "sum-a"]),
        ("inputProtocol", "==", "application/json", ["opt-c", "qa-b"]),
        ("input_protocols", "IN", ["image/png", "application/json"], ["img-d", "opt-c", "qa-b"]),
        ("outputProtocols", "NOT IN", ["text/plain"], ["opt-c"]),
        ("outputProtocol", "LIKE", "application/*", ["opt-c"]),
        ("tags", "IN", [], []),
        ("tags", "NOT IN", [], ["img-d", "opt-c", "qa-b", "sum-a"]),
    ],
)
def test_it_treats_list_fields_as_sets_of_elements(org, catalog, variable, operator, value, expected):
    assert where(org, variable, operator, value) == expected


@pytest.mark.parametrize(
    ("variable", "operator", "value", "expected"),
    [
        # Numbers compare as numbers; the string "16" in opt-c is not a number.
        ("metadata.gpus.memory", ">", 16, ["sum-a"]),
        ("metadata.gpus.memory", ">=", 8, ["qa-b", "sum-a"]),
        ("metadata.gpus.memory", "<", 10, ["qa-b"]),
        ("metadata.gpus.memory", "<=", 24.0, ["qa-b", "sum-a"]),
        ("metadata.gpus.memory", "==", 24, ["sum-a"]),
        ("metadata.gpus.memory", "==", "16", ["opt-c"]),
        ("metadata.gpus.memory", "==", 16, []),
        ("metadata.gpus.memory", ">", "1", ["opt-c"]),
        ("blockMetadata.gpus.count", "IN", [2, 3], ["sum-a"]),
        ("metadata.region", "==", "eu", ["sum-a"]),
        ("blockMetadata.region", "IN", ["eu", "us"], ["qa-b", "sum-a"]),
        # A missing key is "not equal", not unknown.
        ("metadata.region", "!=", "eu", ["img-d", "opt-c", "qa-b"]),
        ("metadata.region", "NOT IN", ["eu", "us"], ["img-d", "opt-c"]),
        ("metadata.region", "LIKE", "E*", ["sum-a"]),
        ("metadata.languages", "==", "de", ["sum-a"]),
        ("metadata.languages", "IN", ["de", "fr"], ["sum-a"]),
        ("metadata.languages", "LIKE", "e*", ["qa-b", "sum-a"]),
        ("metadata.languages", "==", ["en"], ["qa-b"]),
        ("metadata.gpus", "==", {"memory": 8}, ["qa-b"]),
        ("metadata.languages.1", "==", "de", ["sum-a"]),
        ("metadata.languages.0", "IN", ["en"], ["qa-b", "sum-a"]),
    ],
)
def test_it_reaches_into_metadata_by_dot_path(org, catalog, variable, operator, value, expected):
    assert where(org, variable, operator, value) == expected


def test_a_list_of_conditions_is_an_and(org, catalog):
    assert ids(org, {"conditions": [
        {"variable": "tags", "operator": "IN", "value": ["qa", "summarization"]},
        {"variable": "metadata.region", "operator": "==", "value": "us"},
    ]}) == ["qa-b"]


def test_it_nests_and_or_groups(org, catalog):
    payload = {"logicalOperator": "AND", "conditions": [
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
    assert ids(org, payload) == ["img-d", "opt-c", "qa-b"]
    payload["conditions"][0]["logicalOperator"] = "and"
    assert ids(org, payload) == []


def test_it_accepts_the_seed_filter_payload(org, catalog):
    payload = {"body": {"values": {"matchType": "cluster", "filter": {"clusterQuery": {
        "logicalOperator": "AND",
        "conditions": [
            {"variable": "tags", "operator": "IN", "value": ["qa"]},
            {"variable": "inputProtocols", "operator": "==", "value": "text/plain"},
        ],
    }}}}}
    assert ids(org, payload) == ["qa-b"]


def test_it_accepts_a_bare_conditions_object_with_kind(org, catalog):
    payload = {"logicalOperator": "OR", "kind": "llm", "conditions": [
        {"variable": "tags", "operator": "==", "value": "prompt"},
        {"variable": "tags", "operator": "==", "value": "qa"},
    ]}
    assert ids(org, payload) == ["qa-b"]


def test_it_accepts_the_sdk_simple_dict(org, catalog):
    assert ids(org, {"tags": ["qa", "summarization"], "inputProtocols": ["text/plain"]}) == ["qa-b", "sum-a"]
    assert ids(org, {"kind": "optimizer"}) == ["opt-c"]


def test_no_conditions_match_everything_visible(org, catalog):
    assert ids(org, {"conditions": []}) == ["img-d", "opt-c", "qa-b", "sum-a"]


def test_like_treats_percent_and_underscore_literally():
    assert like_pattern("100%_a*") == "100\\%\\_a%"


def test_like_does_not_treat_underscore_as_a_wildcard(org, catalog):
    assert where(org, "description", "LIKE", "*accurate_ish*") == ["qa-b"]
    assert where(org, "description", "LIKE", "*100%*") == ["qa-b"]
    assert where(org, "description", "LIKE", "*1_0*") == []


def test_operators_are_case_and_space_insensitive(org, catalog):
    assert where(org, "tags", "not  in", ["qa", "prompt"]) == ["img-d", "sum-a"]
    assert where(org, "description", "like", "*images*") == ["img-d"]


def test_list_and_metadata_equality_compile_to_indexable_containment(org, catalog):
    sql = str(blocks_query(organization=org, payload={"conditions": [
        {"variable": "tags", "operator": "IN", "value": ["qa"]},
        {"variable": "metadata.gpus.memory", "operator": "==", "value": 8}]}).query)
    assert '"registry_block"."tags" @>' in sql
    assert '"registry_block"."metadata" @> {"gpus": {"memory": 8}}' in sql


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"conditions": [{"variable": "tags", "operator": "=~", "value": "x"}]}, "unknown operator '=~'"),
        ({"conditions": [{"variable": "tags", "operator": 3, "value": "x"}]}, "'operator' must be a string"),
        ({"conditions": [{"operator": "==", "value": "x"}]}, "missing 'variable'"),
        ({"conditions": [{"variable": "tags", "value": "x"}]}, "missing 'operator'"),
        ({"conditions": [{"variable": "tags", "operator": "=="}]}, "missing 'value'"),
        ({"conditions": [{"variable": "gpus.memory", "operator": ">", "value": 1}]}, "unknown variable 'gpus.memory'"),
        ({"conditions": [{"variable": "colour", "operator": "==", "value": 1}]}, "unknown root 'colour'"),
        ({"conditions": [{"variable": "", "operator": "==", "value": 1}]}, "'variable' must be a non-empty string"),
        ({"conditions": [{"variable": "metadata.a b", "operator": "==", "value": 1}]}, "invalid key 'a b'"),
        ({"conditions": [{"variable": "tags", "operator": "IN", "value": "qa"}]}, "IN on 'tags' needs a list value"),
        ({"conditions": [{"variable": "id", "operator": "NOT IN", "value": "qa"}]}, "NOT IN on 'id' needs a list"),
        ({"conditions": [{"variable": "tags", "operator": ">", "value": "qa"}]}, "operator > is not supported for 'tags'"),
        ({"conditions": [{"variable": "enabled", "operator": "LIKE", "value": "t*"}]}, "not supported for 'enabled'"),
        ({"conditions": [{"variable": "enabled", "operator": "==", "value": "yes"}]}, "must be true or false"),
        ({"conditions": [{"variable": "createdAt", "operator": ">", "value": "last week"}]}, "ISO 8601"),
        ({"conditions": [{"variable": "description", "operator": "LIKE", "value": 5}]}, "needs a string value"),
        ({"conditions": [{"variable": "name", "operator": "==", "value": 5}]}, "needs a string value"),
        ({"conditions": [{"variable": "tags", "operator": "==", "value": None}]}, "must be a string, number or boolean"),
        ({"conditions": [{"variable": "tags", "operator": "IN", "value": [{"a": 1}]}]}, "must be a string, number or boolean"),
        ({"conditions": [{"variable": "metadata.x", "operator": ">", "value": True}]}, "needs a number or string"),
        ({"logicalOperator": "XOR", "conditions": []}, "logicalOperator: must be AND or OR"),
        ({"conditions": "tags == qa"}, "conditions: must be a list"),
        ({"conditions": [5]}, "malformed condition"),
        ({"conditions": [{"foo": "bar"}]}, "malformed condition"),
        ({"conditions": [], "kind": "model"}, "kind: must be 'llm' or 'optimizer'"),
        ({"body": {"values": {"filter": {}}}}, "body.values.filter.clusterQuery: missing"),
        ({"body": {"values": {"matchType": "vector", "filter": {"clusterQuery": {}}}}}, "matchType: 'vector'"),
        ({"body": []}, "body: missing or not an object"),
        ({"coloUr": ["x"]}, "unknown variable 'coloUr'"),
        ("tags == qa", "expected a JSON object"),
    ],
)
def test_it_rejects_bad_queries_naming_the_problem(payload, message):
    with pytest.raises(QueryError) as info:
        compile_query(payload)
    assert message in str(info.value)


def test_it_names_the_position_of_a_bad_condition():
    with pytest.raises(QueryError, match=r"query\.conditions\[1\]\.conditions\[0\]: unknown operator"):
        compile_query({"conditions": [
            {"variable": "tags", "operator": "==", "value": "qa"},
            {"logicalOperator": "OR", "conditions": [{"variable": "tags", "operator": "~", "value": "x"}]},
        ]})


def test_it_refuses_absurd_nesting():
    node: dict = {"variable": "tags", "operator": "==", "value": "qa"}
    for _ in range(12):
        node = {"logicalOperator": "AND", "conditions": [node]}
    with pytest.raises(QueryError, match="nested deeper than"):
        compile_query(node)


def test_it_suggests_the_metadata_root_for_a_bare_dot_path():
    with pytest.raises(QueryError, match="did you mean 'metadata.gpus.memory'"):
        compile_query({"conditions": [{"variable": "gpus.memory", "operator": ">", "value": 1}]})


def test_the_search_indexes_exist_on_postgresql():
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'registry_block'")
        indexes = dict(cursor.fetchall())
    for name in ("block_tags_gin", "block_input_protocols_gin", "block_output_protocols_gin", "block_metadata_gin"):
        assert "USING gin" in indexes[name]
    assert "gin_trgm_ops" in indexes["block_description_trgm"]
    assert "gin_trgm_ops" in indexes["block_name_trgm"]
