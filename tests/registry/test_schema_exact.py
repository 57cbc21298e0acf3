"""The block API refuses exactly what /api/schema/ refuses (issue 8, item 6): findings of the
schemathesis run (tests/gateway/test_schema_conformance.py), each pinned here on its own."""

from __future__ import annotations

import pytest

from registry.models import Block
from tests.factories import BlockFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def block(owner) -> Block:
    return BlockFactory(organization=owner.organization, block_id="acme-llm", name="Acme", enabled=True)


def test_a_put_with_no_body_is_a_400_and_the_block_is_unchanged(owner, block):
    response = owner.client().generic("PUT", "/api/blocks/acme-llm")
    assert response.status_code == 400
    assert response.json()["success"] is False and "needs" not in response.json() and "PUT" in response.json()["message"]
    block.refresh_from_db()
    assert block.name == "Acme" and block.enabled is True


def test_a_put_with_no_body_by_a_member_or_another_organization_is_refused_as_before(member, outsider, block):
    assert member.client().generic("PUT", "/api/blocks/acme-llm").status_code == 403
    assert outsider.client().generic("PUT", "/api/blocks/acme-llm").status_code == 404


@pytest.mark.parametrize("body", [{"enabled": 0}, {"enabled": "false"}, {"name": 7}, {"backend": {"type": 1}}])
def test_a_block_field_of_the_wrong_json_type_is_a_400_not_coerced(owner, block, body):
    response = owner.client().patch("/api/blocks/acme-llm", body, format="json")
    assert response.status_code == 400 and response.json()["success"] is False
    block.refresh_from_db()
    assert block.enabled is True and block.name == "Acme"


def test_a_patch_with_a_backend_but_no_type_is_a_400_not_a_500(owner, block):
    response = owner.client().patch("/api/blocks/acme-llm", {"backend": {"config": {}}}, format="json")
    assert response.status_code == 400
    assert response.json()["message"] == "backend: type: required whenever backend is given"


@pytest.mark.parametrize("body", [{"inputProtocols": None}, {"inputProtocols": ["text/plain"], "inputProtocol": "x/y"}])
def test_protocols_that_the_schema_refuses_are_a_400(owner, block, body):
    assert owner.client().patch("/api/blocks/acme-llm", body, format="json").status_code == 400


def test_a_query_with_a_null_kind_means_any_kind(owner, block):
    response = owner.client().post("/api/blocks/query", {"logicalOperator": "AND", "kind": None, "conditions": []},
                                   format="json")
    assert response.status_code == 200 and [b["id"] for b in response.json()["data"]] == ["acme-llm"]


def test_a_similarity_with_null_settings_and_filter_rule_uses_the_defaults(owner, block):
    payload = {"body": {"values": {"rankingPolicyRule": {"values": {
        "settings": None, "policyCodePath": None, "parameters": {"query": "acme", "filterRule": None}}}}}}
    response = owner.client().post("/api/blocks/similarity", payload, format="json")
    assert response.status_code == 200 and response.json()["data"][0]["id"] == "acme-llm"


def test_an_estimate_whose_prompts_are_not_messages_is_a_400_not_a_500(owner, block):
    response = owner.client().post("/discovery/estimate", {"search_query": {"prompts": [[None, None]]},
                                                          "block_id": "acme-llm"}, format="json")
    assert response.status_code == 400
    assert response.json()["message"] == "search_query's messages or prompts must be message objects"


def test_check_execute_refuses_a_zero_max_completion_tokens_even_beside_max_tokens(owner, block):
    response = owner.client().post("/discovery/check_execute", {
        "search_query": "hi", "query_params": {"max_tokens": 1, "max_completion_tokens": 0}, "block_id": "acme-llm"},
        format="json")
    assert response.status_code == 400
    assert response.json()["message"] == "query_params.max_completion_tokens must be a positive integer"
