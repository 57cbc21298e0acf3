"""The blocks REST API: CRUD, the query and similarity endpoints, tenancy and bad input."""

from __future__ import annotations

import pytest

from registry.models import Block, BlockGrant
from tests.factories import BlockFactory

pytestmark = pytest.mark.django_db

SEED_BLOCK = {
    "id": "custom-llm-block",
    "blockMetadata": {"description": "Custom summarization model", "tags": ["summary", "text"], "family": "t5"},
    "inputProtocols": ["text/plain"],
    "outputProtocols": ["text/plain"],
}


def query(client, conditions, **extra):
    return client.post("/api/blocks/query", {"conditions": conditions, **extra}, format="json")


def found(response) -> list[str]:
    assert response.status_code == 200, response.json()
    return sorted(item["id"] for item in response.json()["data"])


@pytest.fixture
def private_block(org) -> Block:
    return BlockFactory(block_id="acme-secret", organization=org, tags=["secret"], description="Acme only")


@pytest.fixture
def public_block(org) -> Block:
    return BlockFactory(block_id="acme-public", organization=org, tags=["shared"], visibility=Block.PUBLIC)


# Create, read, update, delete.


def test_it_creates_a_block_from_the_seed_shape(owner):
    response = owner.client().post("/api/blocks", SEED_BLOCK, format="json")
    assert response.status_code == 201, response.json()
    data = response.json()["data"]
    assert data["id"] == "custom-llm-block"
    assert data["blockMetadata"] == {"description": "Custom summarization model", "tags": ["summary", "text"], "family": "t5"}
    assert data["inputProtocols"] == ["text/plain"]
    assert data["organization"] == "acme"
    assert data["visibility"] == "private"
    block = Block.objects.get(block_id="custom-llm-block")
    assert block.metadata == {"family": "t5"}
    assert block.organization == owner.organization


def test_it_accepts_singular_protocol_spellings(owner):
    body = {"id": "singular", "inputProtocol": "text/plain", "outputProtocol": ["application/json"]}
    data = owner.client().post("/api/blocks", body, format="json").json()["data"]
    assert data["inputProtocols"] == ["text/plain"]
    assert data["outputProtocols"] == ["application/json"]


def test_it_creates_with_backend_kind_visibility_and_masks_secrets(owner):
    body = {"id": "opt", "kind": "optimizer", "name": "Opt", "visibility": "public", "enabled": False,
            "backend": {"type": "openai", "config": {"base_url": "http://x", "api_key": "sk-secret"}}}
    data = owner.client().post("/api/blocks", body, format="json").json()["data"]
    assert (data["kind"], data["name"], data["visibility"], data["enabled"]) == ("optimizer", "Opt", "public", False)
    assert data["backend"] == {"type": "openai", "config": {"base_url": "http://x", "api_key": "***"}}


def test_a_duplicate_block_id_is_a_409(owner):
    assert owner.client().post("/api/blocks", SEED_BLOCK, format="json").status_code == 201
    response = owner.client().post("/api/blocks", SEED_BLOCK, format="json")
    assert response.status_code == 409
    assert response.json() == {"success": False, "message": "you already have a block with id 'custom-llm-block'"}
    assert Block.objects.filter(block_id="custom-llm-block").count() == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "id"),
        ({"id": ""}, "id"),
        ({"id": "has space"}, "id"),
        ({"id": "a/b"}, "id"),
        ({"id": "query"}, "id"),
        ({"id": "x", "kind": "model"}, "kind"),
        ({"id": "x", "visibility": "everyone"}, "visibility"),
        ({"id": "x", "blockMetadata": "text"}, "blockMetadata"),
        ({"id": "x", "blockMetadata": {"tags": "qa,chat"}}, "blockMetadata"),
        ({"id": "x", "blockMetadata": {"tags": [1, 2]}}, "blockMetadata"),
        ({"id": "x", "blockMetadata": {"description": 5}}, "blockMetadata"),
        ({"id": "x", "inputProtocols": [""]}, "inputProtocols"),
        ({"id": "x", "inputProtocols": {"a": 1}}, "inputProtocols"),
        ({"id": "x", "inputProtocols": ["a"], "inputProtocol": "b"}, "inputProtocol"),
        ({"id": "x", "backend": {"config": {}}}, "backend"),
        ({"id": "x", "backend": {"type": "openai", "config": []}}, "backend"),
        ({"id": "x", "enabled": "maybe"}, "enabled"),
        ({"id": "x", "colour": "red"}, "colour"),
    ],
)
def test_it_rejects_invalid_blocks_naming_the_field(owner, body, field):
    response = owner.client().post("/api/blocks", body, format="json")
    assert response.status_code == 400
    payload = response.json()
    assert payload["success"] is False
    assert payload["message"].startswith(f"{field}:"), payload["message"]
    assert not Block.objects.exists()


def test_it_rejects_a_body_that_is_not_json(owner):
    response = owner.client().post("/api/blocks", "{not json", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["success"] is False


def test_it_gets_a_block(owner, private_block):
    response = owner.client().get("/api/blocks/acme-secret")
    assert response.status_code == 200
    assert response.json() == {"success": True, "data": Block.objects.get(block_id="acme-secret").to_dict()}


def test_a_missing_block_is_a_404(owner):
    response = owner.client().get("/api/blocks/nope")
    assert response.status_code == 404
    assert response.json() == {"success": False, "message": "block not found"}


def test_it_lists_visible_blocks_with_paging_and_kind(owner, catalog):
    client = owner.client()
    page = client.get("/api/blocks?limit=2&offset=1").json()
    assert [b["id"] for b in page["data"]] == ["opt-c", "qa-b"]
    assert (page["hasMore"], page["limit"], page["offset"]) == (True, 2, 1)
    assert client.get("/api/blocks?limit=2&offset=2").json()["hasMore"] is False
    assert [b["id"] for b in client.get("/api/blocks?kind=optimizer").json()["data"]] == ["opt-c"]


@pytest.mark.parametrize("params", ["limit=0", "limit=abc", "limit=5000", "offset=-1", "kind=model"])
def test_it_rejects_bad_list_parameters(owner, params):
    response = owner.client().get(f"/api/blocks?{params}")
    assert response.status_code == 400
    assert params.split("=")[0] in response.json()["message"]


def test_patch_changes_only_the_given_fields(owner, private_block):
    response = owner.client().patch(
        "/api/blocks/acme-secret", {"blockMetadata": {"tags": ["new"], "family": "x"}, "enabled": False}, format="json"
    )
    assert response.status_code == 200, response.json()
    private_block.refresh_from_db()
    assert private_block.tags == ["new"]
    assert private_block.description == "Acme only"
    assert private_block.metadata == {"family": "x"}
    assert private_block.enabled is False


def test_patch_keeps_a_masked_secret(owner):
    client = owner.client()
    client.post("/api/blocks", {"id": "k", "backend": {"type": "openai", "config": {"api_key": "sk-1"}}}, format="json")
    fetched = client.get("/api/blocks/k").json()["data"]
    client.patch("/api/blocks/k", {"backend": fetched["backend"]}, format="json")
    assert Block.objects.get(block_id="k").backend_config == {"api_key": "sk-1"}


def test_put_replaces_every_field(owner, private_block):
    response = owner.client().put("/api/blocks/acme-secret", {"name": "renamed"}, format="json")
    assert response.status_code == 200, response.json()
    private_block.refresh_from_db()
    assert (private_block.name, private_block.description, private_block.tags) == ("renamed", "", [])


def test_an_update_cannot_change_the_id(owner, private_block):
    response = owner.client().patch("/api/blocks/acme-secret", {"id": "other"}, format="json")
    assert response.status_code == 400
    assert response.json()["message"].startswith("id:")
    assert Block.objects.filter(block_id="acme-secret").exists()


def test_patch_rejects_bad_fields_and_changes_nothing(owner, private_block):
    response = owner.client().patch("/api/blocks/acme-secret", {"name": "ok", "kind": "bad"}, format="json")
    assert response.status_code == 400
    assert response.json()["message"].startswith("kind:")
    private_block.refresh_from_db()
    assert private_block.name == "acme-secret"


def test_it_deletes_a_block(owner, private_block):
    response = owner.client().delete("/api/blocks/acme-secret")
    assert response.json() == {"success": True, "data": {"id": "acme-secret", "deleted": True}}
    assert not Block.objects.filter(block_id="acme-secret").exists()
    assert owner.client().delete("/api/blocks/acme-secret").status_code == 404


# Tenancy: another organization's private block does not exist for the outsider.


def test_the_outsider_cannot_see_a_private_block(outsider, private_block):
    response = outsider.client().get("/api/blocks/acme-secret")
    assert response.status_code == 404
    assert response.json() == {"success": False, "message": "block not found"}


@pytest.mark.parametrize("method", ["patch", "put", "delete"])
def test_the_outsider_cannot_change_a_private_block_and_learns_nothing(outsider, private_block, method):
    response = getattr(outsider.client(), method)("/api/blocks/acme-secret", {"name": "pwned"}, format="json")
    assert response.status_code == 404
    assert response.json() == {"success": False, "message": "block not found"}
    private_block.refresh_from_db()
    assert private_block.name == "acme-secret"


def test_the_outsider_lists_and_queries_only_public_blocks(outsider, private_block, public_block):
    client = outsider.client()
    assert [b["id"] for b in client.get("/api/blocks").json()["data"]] == ["acme-public"]
    assert found(query(client, [])) == ["acme-public"]
    assert found(query(client, [{"variable": "tags", "operator": "IN", "value": ["secret", "shared"]}])) == ["acme-public"]
    assert found(query(client, [{"variable": "id", "operator": "==", "value": "acme-secret"}])) == []


def test_the_outsider_sees_but_cannot_change_a_public_block(outsider, public_block):
    client = outsider.client()
    # Another organization's block is reached by its qualified id only; its plain id names nothing.
    assert client.get("/api/blocks/acme/acme-public").status_code == 200
    assert client.get("/api/blocks/acme-public").status_code == 404
    for method in ("patch", "put", "delete"):
        response = getattr(client, method)("/api/blocks/acme/acme-public", {"name": "x"}, format="json")
        assert response.status_code == 403
    public_block.refresh_from_db()
    assert public_block.name == "acme-public"


def test_a_grant_shares_a_private_block_read_only(outsider, private_block):
    BlockGrant.objects.create(block=private_block, organization=outsider.organization)
    client = outsider.client()
    assert client.get("/api/blocks/acme/acme-secret").status_code == 200
    assert found(query(client, [{"variable": "tags", "operator": "==", "value": "secret"}])) == ["acme-secret"]
    assert client.delete("/api/blocks/acme/acme-secret").status_code == 403


def test_the_outsider_does_not_find_a_private_block_by_similarity(outsider, private_block, public_block):
    payload = similarity_payload([{"variable": "task_description", "operator": "LIKE", "value": "secret acme"}])
    data = outsider.client().post("/api/blocks/similarity", payload, format="json").json()["data"]
    assert [d["id"] for d in data] == ["acme-public"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/blocks"),
        ("post", "/api/blocks"),
        ("get", "/api/blocks/acme-secret"),
        ("patch", "/api/blocks/acme-secret"),
        ("put", "/api/blocks/acme-secret"),
        ("delete", "/api/blocks/acme-secret"),
        ("post", "/api/blocks/query"),
        ("post", "/api/blocks/similarity"),
    ],
)
def test_it_requires_a_key(anon, private_block, method, path):
    response = getattr(anon, method)(path, {}, format="json")
    assert response.status_code == 401
    assert response.json()["success"] is False


def test_it_rejects_a_wrong_key(private_block):
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer sb-wrong")
    response = client.get("/api/blocks")
    assert response.status_code == 401
    assert response.json() == {"success": False, "message": "Incorrect API key provided"}


# Query endpoint.


def test_query_accepts_the_seed_payload(owner, catalog):
    payload = {"body": {"values": {"matchType": "cluster", "filter": {"clusterQuery": {
        "logicalOperator": "AND",
        "conditions": [{"variable": "tags", "operator": "IN", "value": ["qa"]},
                       {"variable": "inputProtocols", "operator": "==", "value": "text/plain"}]}}}}}
    assert found(owner.client().post("/api/blocks/query", payload, format="json")) == ["qa-b"]


def test_query_accepts_bare_conditions_and_the_simple_dict(owner, catalog):
    client = owner.client()
    assert found(query(client, [{"variable": "metadata.gpus.memory", "operator": ">", "value": 16}])) == ["sum-a"]
    assert found(query(client, [], kind="optimizer")) == ["opt-c"]
    simple = client.post("/api/blocks/query", {"tags": ["qa"], "inputProtocols": ["text/plain"]}, format="json")
    assert found(simple) == ["qa-b"]


def test_query_pages(owner, catalog):
    page = owner.client().post("/api/blocks/query?limit=1&offset=3", {"conditions": []}, format="json").json()
    assert ([b["id"] for b in page["data"]], page["hasMore"]) == (["sum-a"], False)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"conditions": [{"variable": "tags", "operator": "~=", "value": "qa"}]}, "unknown operator '~='"),
        ({"conditions": [{"variable": "size", "operator": "==", "value": 1}]}, "unknown variable 'size'"),
        ({"conditions": [{"variable": "tags", "operator": "IN", "value": "qa"}]}, "needs a list value"),
        ({"conditions": [{"oops": 1}]}, "malformed condition"),
        ({"body": {"values": {}}}, "clusterQuery: missing"),
        ([1, 2], "malformed condition"),
    ],
)
def test_query_rejects_bad_input_with_400(owner, body, message):
    response = owner.client().post("/api/blocks/query", body, format="json")
    assert response.status_code == 400
    assert response.json()["success"] is False
    assert message in response.json()["message"]


# Similarity endpoint.


def similarity_payload(conditions, policy="text-overlap", settings=None, parameters=None):
    return {"body": {"values": {"matchType": "cluster", "rankingPolicyRule": {"values": {
        "executionMode": "code",
        "policyCodePath": policy,
        "settings": settings or {"maxResults": 10, "enableCaching": True},
        "parameters": {"filterRule": {"clusterQuery": {"logicalOperator": "AND", "conditions": conditions}},
                       **(parameters or {})},
    }}}}}


def test_similarity_ranks_by_text_overlap(owner, catalog):
    payload = similarity_payload([{"variable": "task_description", "operator": "LIKE", "value": "summarize research paper"}])
    data = owner.client().post("/api/blocks/similarity", payload, format="json").json()["data"]
    assert [d["id"] for d in data] == ["sum-a"]
    # Task stems summa, resea, paper: all three in the description, summa in a tag.
    assert data[0]["score"] == round((3 + 2 * 1) / 9, 4)


def test_similarity_filters_candidates_and_honours_return(owner, catalog):
    client = owner.client()
    conditions = [{"variable": "task_description", "operator": "LIKE", "value": "text question prompt images"}]
    ranked = client.post("/api/blocks/similarity", similarity_payload(conditions), format="json").json()["data"]
    assert len(ranked) == 4
    assert [d["score"] for d in ranked] == sorted((d["score"] for d in ranked), reverse=True)
    top1 = similarity_payload(conditions, parameters={"return": 1})
    assert len(client.post("/api/blocks/similarity", top1, format="json").json()["data"]) == 1
    narrowed = similarity_payload([*conditions, {"variable": "kind", "operator": "==", "value": "optimizer"}])
    assert [d["id"] for d in client.post("/api/blocks/similarity", narrowed, format="json").json()["data"]] == ["opt-c"]
    capped = similarity_payload(conditions, settings={"maxResults": 2})
    assert len(client.post("/api/blocks/similarity", capped, format="json").json()["data"]) == 2


def test_similarity_takes_the_task_from_parameters_query(owner, catalog):
    payload = similarity_payload([], parameters={"query": "caption my images"})
    assert [d["id"] for d in owner.client().post("/api/blocks/similarity", payload, format="json").json()["data"]] == ["img-d"]


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (similarity_payload([{"variable": "task_description", "operator": "LIKE", "value": "x"}],
                            policy="policies/my_policy.zip"), "is not a built-in policy"),
        (similarity_payload([{"variable": "task_description", "operator": "LIKE", "value": "x"}],
                            policy="/etc/passwd"), "never executed"),
        (similarity_payload([]), "no task description"),
        (similarity_payload([{"variable": "task_description", "operator": "LIKE", "value": 3}]), "non-empty string"),
        (similarity_payload([{"logicalOperator": "OR", "conditions": [
            {"variable": "task_description", "operator": "LIKE", "value": "x"}]}]), "top-level AND"),
        (similarity_payload([{"variable": "task_description", "operator": "LIKE", "value": "x"}],
                            settings={"maxResults": 0}), "maxResults: must be an integer"),
        (similarity_payload([{"variable": "task_description", "operator": "LIKE", "value": "x"}],
                            parameters={"return": "five"}), "return: must be an integer"),
        (similarity_payload([{"variable": "task_description", "operator": "LIKE", "value": "x"},
                             {"variable": "size", "operator": "==", "value": 1}]), "unknown variable 'size'"),
        ({"body": {"values": {"filter": {}}}}, "rankingPolicyRule.values: missing"),
        ({"conditions": []}, "body.values: missing"),
    ],
)
def test_similarity_rejects_bad_input_with_400(owner, catalog, payload, message):
    response = owner.client().post("/api/blocks/similarity", payload, format="json")
    assert response.status_code == 400
    assert message in response.json()["message"]


def test_similarity_refuses_a_policy_path_in_its_execution_mode(owner, catalog):
    payload = similarity_payload([{"variable": "task_description", "operator": "LIKE", "value": "x"}])
    payload["body"]["values"]["rankingPolicyRule"]["values"]["executionMode"] = "container"
    response = owner.client().post("/api/blocks/similarity", payload, format="json")
    assert response.status_code == 400
    assert "executionMode" in response.json()["message"]


# Schema.


def test_the_openapi_schema_documents_the_block_endpoints(anon):
    response = anon.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    import json

    paths = json.loads(response.content)["paths"]
    for path in ("/api/blocks", "/api/blocks/{block_id}", "/api/blocks/query", "/api/blocks/similarity"):
        assert path in paths
    assert set(paths["/api/blocks/{block_id}"]) >= {"get", "patch", "put", "delete"}


def test_a_protocol_is_blank_exactly_when_the_schema_says_so(owner):
    # Found by schemathesis: "\x1d" matches the schema's \S (ECMA-262) but Python's strip() removed it.
    body = {"id": "sep", "kind": "llm", "outputProtocols": ["\x1d", " text/plain "]}
    response = owner.client().post("/api/blocks", body, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["data"]["outputProtocols"] == ["\x1d", "text/plain"]
    blank = owner.client().post("/api/blocks", {**body, "id": "blank", "outputProtocols": ["\ufeff\u3000 "]},
                                format="json")
    assert blank.status_code == 400 and "outputProtocols" in blank.json()["message"]
