"""The query compiler against PostgreSQL: every operator, list and scalar fields, metadata paths,
nesting, the payload shapes (tests/support/query_cases.py, which SQLite runs too: test_sqlite_lookups.py),
what only PostgreSQL has (containment SQL, the search indexes), and every way a query can be wrong."""

from __future__ import annotations

import pytest

from registry.query import QueryError, compile_query, like_pattern
from registry.selectors import blocks_query
from tests.support.query_cases import (
    LIST_CASES,
    METADATA_CASES,
    SCALAR_CASES,
    SHAPE_CASES,
    QueryCase,
    case_ids,
    matching,
)

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("case", SCALAR_CASES, ids=case_ids(SCALAR_CASES))
def test_it_compiles_each_operator_on_scalar_columns(org, catalog, case: QueryCase):
    assert matching(org, case.payload) == case.expected


@pytest.mark.parametrize("case", LIST_CASES, ids=case_ids(LIST_CASES))
def test_it_treats_list_fields_as_sets_of_elements(org, catalog, case: QueryCase):
    assert matching(org, case.payload) == case.expected


@pytest.mark.parametrize("case", METADATA_CASES, ids=case_ids(METADATA_CASES))
def test_it_reaches_into_metadata_by_dot_path(org, catalog, case: QueryCase):
    assert matching(org, case.payload) == case.expected


@pytest.mark.parametrize("case", SHAPE_CASES, ids=case_ids(SHAPE_CASES))
def test_it_accepts_each_payload_shape_and_nesting(org, catalog, case: QueryCase):
    assert matching(org, case.payload) == case.expected


def test_like_treats_percent_and_underscore_literally():
    assert like_pattern("100%_a*") == "100\\%\\_a%"


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
