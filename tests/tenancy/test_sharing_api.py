"""Grants, the organization's model registry, and what an outsider can (not) see."""

from __future__ import annotations

import pytest

from registry.models import Block, BlockGrant
from registry.tenancy.models import OrgModel
from registry.tenancy.selectors import blocks_visible_to
from tests.factories import BlockFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def private(org):
    return BlockFactory(organization=org, block_id="acme-llm")


@pytest.fixture
def public(other_org):
    return BlockFactory(organization=other_org, block_id="globex-public", visibility=Block.PUBLIC)


@pytest.fixture
def secret(other_org):
    return BlockFactory(organization=other_org, block_id="globex-secret")


def test_an_organization_sees_its_own_public_and_granted_blocks_only(org, private, public, secret, other_org):
    assert set(blocks_visible_to(org).values_list("block_id", flat=True)) == {"acme-llm", "globex-public"}
    BlockGrant.objects.create(block=secret, organization=org)
    assert set(blocks_visible_to(org).values_list("block_id", flat=True)) == {
        "acme-llm", "globex-public", "globex-secret"}
    assert set(blocks_visible_to(other_org).values_list("block_id", flat=True)) == {"globex-public", "globex-secret"}


def test_an_owner_shares_a_block_and_takes_it_back(owner, outsider, private):
    response = owner.client().post("/api/blocks/acme-llm/grants", {"organization": "globex"}, format="json")
    assert response.status_code == 201
    assert owner.client().get("/api/blocks/acme-llm/grants").json()["data"][0]["organization"] == "globex"
    assert outsider.organization in [g.organization for g in BlockGrant.objects.filter(block=private)]
    again = owner.client().post("/api/blocks/acme-llm/grants", {"organization": "globex"}, format="json")
    assert again.status_code == 409

    # The grantee sees it (by its qualified id only), but cannot manage its sharing.
    assert outsider.client().get("/api/blocks/acme/acme-llm/grants").status_code == 403
    assert outsider.client().delete("/api/blocks/acme/acme-llm/grants/globex").status_code == 403
    assert outsider.client().get("/api/blocks/acme-llm/grants").status_code == 404

    assert owner.client().delete("/api/blocks/acme-llm/grants/globex").status_code == 200
    assert not BlockGrant.objects.exists()
    assert owner.client().delete("/api/blocks/acme-llm/grants/globex").status_code == 404


def test_grants_on_a_foreign_private_block_look_missing(owner, secret):
    for response in (owner.client().get("/api/blocks/globex-secret/grants"),
                     owner.client().post("/api/blocks/globex-secret/grants", {"organization": "acme"}, format="json"),
                     owner.client().delete("/api/blocks/globex-secret/grants/acme")):
        assert response.status_code == 404
        assert response.json() == {"success": False, "message": "Not found."}
    missing = owner.client().get("/api/blocks/no-such-block/grants")
    assert missing.status_code == 404 and missing.json() == {"success": False, "message": "Not found."}
    assert not BlockGrant.objects.exists()


@pytest.mark.parametrize("body, message", [
    ({}, "organization: This field is required."),
    ({"organization": "bad slug!"}, "organization: Enter a valid"),
])
def test_bad_grant_requests_get_a_clear_400(owner, private, body, message):
    response = owner.client().post("/api/blocks/acme-llm/grants", body, format="json")
    assert response.status_code == 400
    assert response.json()["message"].startswith(message)


@pytest.mark.parametrize("body, status, message", [
    ({"organization": "nowhere"}, 404, "organization: unknown organization 'nowhere'"),
    ({"organization": "acme"}, 422, "organization: an organization always sees its own blocks"),
])
def test_a_grant_to_a_missing_organization_is_404_and_to_ones_own_is_422(owner, private, body, status, message):
    response = owner.client().post("/api/blocks/acme-llm/grants", body, format="json")
    assert response.status_code == status
    assert response.json()["message"] == message
    assert not BlockGrant.objects.exists()


def test_a_member_cannot_share(member, private, other_org):
    response = member.client().post("/api/blocks/acme-llm/grants", {"organization": "globex"}, format="json")
    assert response.status_code == 403


def test_the_org_registry_registers_looks_up_and_unregisters_models(owner, member, private, public):
    client = owner.client()
    created = client.post("/api/orgs/acme/models", {"name": "summarizer", "block_id": "acme-llm"}, format="json")
    assert created.status_code == 201
    assert created.json()["data"]["blockId"] == "acme-llm"
    # Another organization's block is registered by its qualified id; its plain id names nothing.
    assert client.post("/api/orgs/acme/models", {"name": "shared", "block_id": "globex-public"},
                       format="json").status_code == 404
    shared = client.post("/api/orgs/acme/models", {"name": "shared", "block_id": "globex/globex-public"},
                         format="json")
    assert shared.status_code == 201 and shared.json()["data"]["blockId"] == "globex/globex-public"
    listing = member.client().get("/api/orgs/acme/models").json()["data"]
    assert [m["name"] for m in listing] == ["shared", "summarizer"]
    one = member.client().get("/api/orgs/acme/models/summarizer").json()["data"]
    assert one["block"]["id"] == "acme-llm"

    duplicate = client.post("/api/orgs/acme/models", {"name": "summarizer", "block_id": "globex/globex-public"},
                            format="json")
    assert duplicate.status_code == 409
    assert member.client().delete("/api/orgs/acme/models/summarizer").status_code == 403
    assert client.delete("/api/orgs/acme/models/summarizer").status_code == 200
    assert client.get("/api/orgs/acme/models/summarizer").status_code == 404
    assert list(OrgModel.objects.values_list("name", flat=True)) == ["shared"]


@pytest.mark.parametrize("body, message", [
    ({"block_id": "acme-llm"}, "name: This field is required."),
    ({"name": "a/b", "block_id": "acme-llm"}, "name: This value does not match the required pattern."),
    ({"name": "ok"}, "block_id: This field is required."),
])
def test_bad_org_registry_requests_get_a_clear_400(owner, private, secret, body, message):
    response = owner.client().post("/api/orgs/acme/models", body, format="json")
    assert response.status_code == 400
    assert response.json()["message"] == message
    assert not OrgModel.objects.exists()


@pytest.mark.parametrize("block_id", ["globex-secret", "missing"])
def test_registering_a_model_name_for_a_missing_or_foreign_block_is_404(owner, private, secret, block_id):
    response = owner.client().post("/api/orgs/acme/models", {"name": "ok", "block_id": block_id}, format="json")
    assert response.status_code == 404
    assert response.json()["message"] == f"block_id: unknown block {block_id!r}"
    assert not OrgModel.objects.exists()


def test_another_organizations_registry_is_a_404(owner, outsider, private):
    OrgModel.objects.create(organization=owner.organization, name="summarizer", block=private)
    for response in (outsider.client().get("/api/orgs/acme/models"),
                     outsider.client().get("/api/orgs/acme/models/summarizer"),
                     outsider.client().delete("/api/orgs/acme/models/summarizer"),
                     outsider.client().post("/api/orgs/acme/models", {"name": "x", "block_id": "acme-llm"},
                                            format="json")):
        assert response.status_code == 404
        assert response.json() == {"success": False, "message": "Not found."}
    assert OrgModel.objects.count() == 1
