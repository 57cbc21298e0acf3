"""Bad input on /api and /discovery: NUL characters, absurdly deep JSON, invalid UTF-8 and oversized
bodies get a 4xx in the {"success": false, "message": ...} envelope, never a 500 or an HTML page,
and nothing is written. (The same over real uvicorn, and on /v1: tests/gateway/test_bad_input.py.)"""

from __future__ import annotations

import pytest
from django.apps import apps

from registry.models import Block
from tests.factories import BlockFactory

pytestmark = pytest.mark.django_db

DEEP = b"[" * 100_000 + b"]" * 100_000
DEEP_OBJECT = b'{"a":' * 100_000 + b"1" + b"}" * 100_000

# Every operation that reads a JSON body; {block} is a block the owner's organization owns.
BODY_ENDPOINTS = [
    ("POST", "/api/blocks"),
    ("PATCH", "/api/blocks/{block}"),
    ("PUT", "/api/blocks/{block}"),
    ("POST", "/api/blocks/query"),
    ("POST", "/api/blocks/similarity"),
    ("POST", "/api/blocks/{block}/grants"),
    ("POST", "/api/keys"),
    ("POST", "/api/orgs/acme/models"),
    ("POST", "/api/policies"),
    ("POST", "/api/quotas"),
    ("POST", "/discovery/estimate"),
    ("POST", "/discovery/check_execute"),
]
GET_ENDPOINTS = [
    "/api/blocks",
    "/api/blocks/{block}",
    "/api/blocks/{block}/metrics",
    "/api/blocks/{block}/grants",
    "/api/engines",
    "/api/keys",
    "/api/orgs/acme",
    "/api/orgs/acme/models",
    "/api/policies",
    "/api/quotas",
    "/api/usage",
    "/api/whoami",
]
# What each endpoint would write; counted before and after every refused request.
WRITTEN = ["registry.Block", "registry.BlockGrant", "registry.ApiKey", "tenancy.OrgModel", "tenancy.PolicyRule",
           "tenancy.Quota"]


def row_counts() -> dict[str, int]:
    return {name: apps.get_model(name).objects.count() for name in WRITTEN}


def assert_envelope(response, status: int | None = None) -> str:
    """A 4xx whose body is our JSON envelope; returns its message."""
    assert 400 <= response.status_code < 500, (response.status_code, response.content[:300])
    if status is not None:
        assert response.status_code == status, response.content[:300]
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    body = response.json()
    assert body["success"] is False
    assert isinstance(body["message"], str) and body["message"]
    return body["message"]


@pytest.fixture
def block(owner) -> Block:
    return BlockFactory(organization=owner.organization, block_id="acme-block")


def send(client, method: str, path: str, raw: bytes, content_type: str = "application/json"):
    return client.generic(method, path, raw, content_type=content_type)


# The findings of issue 8, one test each.

def test_a_nul_in_a_block_field_is_a_400_naming_the_field_not_a_500(owner):
    body = b'{"id": "nul-block", "name": "bad\\u0000name", "inputProtocols": ["text/plain"]}'
    before = row_counts()
    message = assert_envelope(send(owner.client(), "POST", "/api/blocks", body), 400)
    assert "name" in message and "NUL" in message
    assert row_counts() == before


def test_a_nul_in_a_query_value_is_a_400_not_a_500(owner, block):
    body = b'{"conditions": [{"variable": "name", "operator": "==", "value": "a\\u0000b"}]}'
    assert "NUL" in assert_envelope(send(owner.client(), "POST", "/api/blocks/query", body), 400)
    reply = owner.client().get("/api/blocks", {"kind": "llm\x00"})
    assert "kind" in assert_envelope(reply, 400)


def test_a_nul_in_the_engines_block_filter_is_a_400_not_a_500(owner, block):
    reply = owner.client().get("/api/engines", {"block": "acme-block\x00"})
    assert "block" in assert_envelope(reply, 400)


def test_json_nested_100000_deep_is_a_400_on_blocks_and_blocks_query_not_a_500(owner):
    before = row_counts()
    for path in ("/api/blocks", "/api/blocks/query"):
        for deep in (DEEP, DEEP_OBJECT):
            assert_envelope(send(owner.client(), "POST", path, deep), 400)
    assert row_counts() == before


def test_a_50_mb_body_to_blocks_is_a_413_envelope_not_html(owner):
    huge = b'{"id": "big", "name": "' + b"x" * (50 * 1024 * 1024) + b'"}'
    before = row_counts()
    assert_envelope(send(owner.client(), "POST", "/api/blocks", huge), 413)
    assert row_counts() == before


# The same, over every endpoint family.

@pytest.mark.parametrize(("method", "path"), BODY_ENDPOINTS)
def test_every_body_endpoint_refuses_nul_deep_json_invalid_utf8_and_oversized_bodies(owner, block, settings,
                                                                                      method, path):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 512 * 1024
    url = path.format(block=block.block_id)
    bad = {
        "nul": b'{"id": "x", "name": "\\u0000", "organization": "globex", "block_id": "acme-block", '
               b'"search_query": "a\\u0000"}',
        "nul in a key": b'{"na\\u0000me": "x"}',
        "deep": DEEP,
        "deep but parseable": b"[" * 500 + b"]" * 500,
        "invalid utf-8": b'{"id": "x", "name": "\xff\xfe"}',
        "lone surrogate": b'{"name": "\\ud800"}',
        "NaN": b'{"name": NaN}',
        "oversized": b'{"name": "' + b"x" * (513 * 1024) + b'"}',
    }
    before = row_counts()
    wrong = {}
    for label, raw in bad.items():
        reply = send(owner.client(), method, url, raw)
        try:
            assert_envelope(reply, 413 if label == "oversized" else 400)
        except AssertionError as exc:
            wrong[label] = str(exc)[:200]
    assert wrong == {}
    assert row_counts() == before


@pytest.mark.parametrize("path", GET_ENDPOINTS)
def test_every_get_endpoint_refuses_a_nul_in_a_query_value_or_name(owner, block, path):
    url = path.format(block=block.block_id)
    assert_envelope(owner.client().get(url, {"limit": "1\x00", "block": "\x00", "state": "ready\x00"}), 400)
    assert_envelope(owner.client().get(url + "?na%00me=1"), 400)


@pytest.mark.parametrize("path", ["/api/blocks/%00", "/api/blocks/a%00b/metrics", "/api/blocks/a%00b/grants",
                                  "/api/blocks/a%00b/grants/globex", "/api/orgs/acme/models/a%00b",
                                  "/api/keys/%00", "/api/orgs/%00"])
def test_a_nul_in_a_path_is_a_4xx_envelope(owner, block, path):
    for method in ("GET", "DELETE"):
        before = row_counts()
        assert_envelope(owner.client().generic(method, path))
        assert row_counts() == before


def test_an_unknown_api_url_is_a_404_envelope_not_an_html_page(owner):
    assert_envelope(owner.client().get("/api/nothing-here"), 404)
    assert_envelope(owner.client().get("/api/keys/not-a-number"), 404)
    assert_envelope(owner.client().get("/discovery/nothing"), 404)


def test_a_non_json_body_is_a_415_envelope(owner):
    assert_envelope(send(owner.client(), "POST", "/api/blocks", b"id=x", "application/x-www-form-urlencoded"), 415)


def test_bad_input_from_another_organization_or_a_member_gets_the_same_envelope(member, outsider, block):
    # A weaker role and a foreign key get a 4xx envelope like the owner: no write, no 500, no leak
    # (the outsider's PATCH is the 404 of a block it cannot see, before its body is read).
    before = row_counts()
    for party in (member, outsider):
        assert_envelope(send(party.client(), "PATCH", f"/api/blocks/{block.block_id}", DEEP))
        # A member may not register blocks at all (403); another organization's owner may, in its own org (400).
        assert_envelope(send(party.client(), "POST", "/api/blocks", b'{"id": "x\\u0000"}'),
                        400 if party is outsider else 403)
        assert_envelope(party.client().get("/api/engines", {"block": "acme-block\x00"}), 400)
    assert row_counts() == before
    block.refresh_from_db()
    assert block.name == "acme-block"


def test_bad_input_without_a_key_is_refused_in_the_envelope(anon):
    assert_envelope(send(anon, "POST", "/api/blocks", DEEP))
    assert_envelope(anon.get("/api/engines", {"block": "\x00"}))


def test_a_moderately_nested_block_metadata_is_still_accepted(owner):
    metadata = {"description": "nested", "tags": ["t"], "deep": {"a": {"b": {"c": {"d": [1, [2, [3]]]}}}}}
    reply = owner.client().post("/api/blocks", {"id": "nested-ok", "blockMetadata": metadata,
                                                "inputProtocols": ["text/plain"]}, format="json")
    assert reply.status_code == 201, reply.json()
    assert reply.json()["data"]["blockMetadata"]["deep"] == metadata["deep"]
