"""Issue 8, privileges: a key never mints a key with more rights than itself, and dies with it.

Regression tests for the finding "a key restricted by allowed_models or an expiry can mint an
unrestricted, non-expiring key with POST /api/keys; revoking the parent leaves the child working".
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from registry.models import ApiKey, Membership
from registry.services import KeyRightsError, api_key_create
from tests.factories import BlockFactory

pytestmark = pytest.mark.django_db


def client_for(raw: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


def works(raw: str) -> bool:
    return client_for(raw).get("/api/whoami").status_code == 200


def mint(raw: str, **body) -> dict:
    response = client_for(raw).post("/api/keys", {"name": "child", **body}, format="json")
    assert response.status_code == 201, response.json()
    return response.json()["data"]


def refused(raw: str, **body) -> str:
    response = client_for(raw).post("/api/keys", {"name": "child", **body}, format="json")
    assert response.status_code == 400, response.json()
    assert response.json()["success"] is False
    return response.json()["message"]


@pytest.fixture
def models(org) -> list[str]:
    for block_id in ("m-one", "m-two", "m-three"):
        BlockFactory(organization=org, block_id=block_id)
    return ["m-one", "m-two", "m-three"]


def test_a_key_restricted_to_some_models_cannot_mint_an_unrestricted_key(owner, models):
    restricted = mint(owner.key, allowed_models=["m-one", "m-two"])["key"]
    before = ApiKey.objects.count()
    assert refused(restricted, allowed_models=[]).startswith("allowed_models: this key is restricted")
    assert refused(restricted, allowed_models=["m-one", "m-three"]) == \
        "allowed_models: 'm-three' not allowed to the key that creates this one"
    assert ApiKey.objects.count() == before

    inherited = mint(restricted)
    assert inherited["allowedModels"] == ["m-one", "m-two"]
    narrower = mint(restricted, allowed_models=["m-two"])
    assert narrower["allowedModels"] == ["m-two"]
    # The child's own children are bound by the child, not by the grandparent.
    assert refused(narrower["key"], allowed_models=["m-one"]).startswith("allowed_models: 'm-one'")


def test_an_expiring_key_cannot_mint_a_longer_lived_or_non_expiring_key(owner):
    expires = timezone.now() + timedelta(hours=1)
    expiring = mint(owner.key, expires_at=expires.isoformat())["key"]
    later = (expires + timedelta(seconds=1)).isoformat()
    assert refused(expiring, expires_at=later).startswith("expires_at: a key cannot outlive the key that creates it")
    assert refused(expiring, expires_at=None).startswith("expires_at: a key cannot outlive")

    inherited = mint(expiring)
    assert inherited["expiresAt"] == expires.isoformat()
    sooner = (expires - timedelta(minutes=30)).isoformat()
    assert mint(expiring, expires_at=sooner)["expiresAt"] == sooner


def test_an_unrestricted_key_mints_keys_as_before(owner, models):
    child = mint(owner.key)
    assert (child["allowedModels"], child["expiresAt"]) == ([], None)
    assert mint(owner.key, allowed_models=["m-three"])["allowedModels"] == ["m-three"]


def test_a_minted_key_acts_for_the_same_person_with_the_same_role(owner):
    child = mint(owner.key)
    parent_id = ApiKey.objects.get(name="alice-key").pk
    assert child["parentId"] == parent_id
    whoami = client_for(child["key"]).get("/api/whoami").json()["data"]
    assert (whoami["role"], whoami["apiKey"]["parentId"]) == ("owner", parent_id)
    # Demoting the person demotes every key they made, minted ones included.
    Membership.objects.filter(user=owner.user).update(role=Membership.MEMBER)
    assert client_for(child["key"]).post("/api/keys", {"name": "x"}, format="json").status_code == 403


def test_a_key_cannot_mint_a_key_with_a_higher_role(org):
    member_key, _ = api_key_create(organization=org, name="machine", role=Membership.MEMBER)
    with pytest.raises(KeyRightsError, match="higher role"):
        api_key_create(organization=org, name="escalated", role=Membership.OWNER, parent=member_key)
    # Over HTTP it never gets that far: a member-role key may not create keys at all.
    _, raw = api_key_create(organization=org, name="machine-2", role=Membership.MEMBER)
    assert client_for(raw).post("/api/keys", {"name": "x"}, format="json").status_code == 403


def test_a_key_cannot_mint_a_key_for_another_person_or_organization(owner, member, other_org):
    parent = ApiKey.objects.get(name="alice-key")
    with pytest.raises(KeyRightsError, match="same person"):
        api_key_create(organization=owner.organization, name="x", created_by=member.user, parent=parent)
    with pytest.raises(KeyRightsError, match="its own organization"):
        api_key_create(organization=other_org, name="x", created_by=owner.user, parent=parent)


def test_a_member_key_and_another_organizations_key_mint_nothing_here(member, outsider):
    assert client_for(member.key).post("/api/keys", {"name": "x"}, format="json").status_code == 403
    # The outsider's key mints in its own organization only, under its own limits.
    child = mint(outsider.key)
    assert ApiKey.objects.get(pk=child["id"]).organization.slug == "globex"


@pytest.mark.parametrize("how", ["revoke", "delete"])
def test_revoking_a_key_revokes_the_keys_it_minted_and_theirs(owner, how):
    child = mint(owner.key, name="child")
    grandchild = mint(child["key"], name="grandchild")
    sibling = mint(owner.key, name="sibling")
    assert works(child["key"]) and works(grandchild["key"])  # now in the key cache

    client = owner.client()  # alice-key itself: revoke the child through the API
    response = client.post(f"/api/keys/{child['id']}/revoke") if how == "revoke" \
        else client.delete(f"/api/keys/{child['id']}")
    assert response.status_code == 200 and response.json()["data"]["active"] is False
    assert not works(child["key"]) and not works(grandchild["key"])
    assert ApiKey.objects.get(pk=grandchild["id"]).revoked_at is not None
    # Only the revoked key's own line: its parent and its siblings keep working.
    assert works(owner.key) and works(sibling["key"])


def test_a_grandchild_cannot_be_used_after_its_grandparent_is_revoked(owner):
    parent = mint(owner.key, name="parent")
    child = mint(parent["key"], name="child")
    grandchild = mint(child["key"], name="grandchild")
    assert owner.client().post(f"/api/keys/{parent['id']}/revoke").status_code == 200
    for raw in (parent["key"], child["key"], grandchild["key"]):
        assert client_for(raw).get("/api/whoami").json() == {"success": False,
                                                             "message": "API key is expired or revoked"}


def test_the_admin_revoke_action_revokes_minted_keys_too(owner):
    child = mint(owner.key, name="child")
    grandchild = mint(child["key"], name="grandchild")
    assert works(grandchild["key"])
    staff = get_user_model().objects.create_superuser("root", "root@example.com", "pw-root")
    admin = Client()
    admin.force_login(staff)
    parent = ApiKey.objects.get(name="alice-key")
    response = admin.post("/admin/registry/apikey/", {"action": "revoke", "_selected_action": [parent.pk]},
                          follow=True)
    assert response.status_code == 200
    assert re.search(r"Revoked 1 key", response.content.decode())
    assert not works(owner.key) and not works(child["key"]) and not works(grandchild["key"])


def test_another_organization_cannot_revoke_a_minted_key(owner, outsider):
    child = mint(owner.key)
    assert outsider.client().post(f"/api/keys/{child['id']}/revoke").status_code == 404
    assert works(child["key"])


def test_the_admin_cannot_change_the_limits_of_a_key_that_minted_keys(owner):
    mint(owner.key, name="child")
    staff = get_user_model().objects.create_superuser("root", "root@example.com", "pw-root")
    admin = Client()
    admin.force_login(staff)
    parent = ApiKey.objects.get(name="alice-key")
    page = admin.get(f"/admin/registry/apikey/{parent.pk}/change/").content.decode()
    assert 'name="expires_at' not in page and 'name="allowed_models"' not in page
    child = ApiKey.objects.get(name="child")
    page = admin.get(f"/admin/registry/apikey/{child.pk}/change/").content.decode()
    assert 'name="allowed_models"' in page
