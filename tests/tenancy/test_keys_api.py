"""API keys and organizations through the REST API."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from registry import auth
from registry.models import ApiKey
from tests.factories import BlockFactory

pytestmark = pytest.mark.django_db


def test_an_owner_creates_a_key_that_is_shown_once_and_works(owner):
    response = owner.client().post("/api/keys", {"name": "ci"}, format="json")
    assert response.status_code == 201 and response["Cache-Control"] == "no-store"
    data = response.json()["data"]
    raw = data["key"]
    assert raw.startswith("sb-") and data["prefix"] == raw[:10]
    stored = ApiKey.objects.get(pk=data["id"])
    assert stored.hashed_key != raw and raw not in str(stored.__dict__)

    listing = owner.client().get("/api/keys").json()["data"]
    assert {k["name"] for k in listing} == {"alice-key", "ci"}
    assert all("key" not in k and "hashedKey" not in k and "hashed_key" not in k for k in listing)
    assert raw not in str(listing)

    from rest_framework.test import APIClient

    fresh = APIClient()
    fresh.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert fresh.get("/api/whoami").json()["data"]["organization"] == "acme"


def test_a_member_can_list_keys_but_not_create_or_revoke_them(owner, member):
    assert member.client().get("/api/keys").status_code == 200
    response = member.client().post("/api/keys", {"name": "mine"}, format="json")
    assert response.status_code == 403
    assert response.json() == {"success": False, "message": "Only organization owners may create API keys."}
    key_id = ApiKey.objects.get(name="alice-key").pk
    assert member.client().delete(f"/api/keys/{key_id}").status_code == 403
    assert member.client().post(f"/api/keys/{key_id}/revoke").status_code == 403


def test_a_revoked_key_stops_working_at_once_in_this_process(owner):
    created = owner.client().post("/api/keys", {"name": "temp"}, format="json").json()["data"]
    from rest_framework.test import APIClient

    temp = APIClient()
    temp.credentials(HTTP_AUTHORIZATION=f"Bearer {created['key']}")
    assert temp.get("/api/keys").status_code == 200  # now in the principal cache for KEY_CACHE_SECONDS

    response = owner.client().post(f"/api/keys/{created['id']}/revoke")
    assert response.status_code == 200 and response.json()["data"]["active"] is False
    answer = temp.get("/api/keys")
    assert answer.status_code == 401
    assert answer.json()["message"] == "API key is expired or revoked"


@pytest.mark.slow  # waits out the key cache
def test_delete_revokes_and_the_cache_cannot_outlive_two_seconds(owner):
    created = owner.client().post("/api/keys", {"name": "temp"}, format="json").json()["data"]
    assert auth.principal_for(f"Bearer {created['key']}", None) is not None
    # Revoked by another process: only the time-bound cache stands between.
    ApiKey.objects.filter(pk=created["id"]).update(revoked_at=timezone.now())
    time.sleep(auth.KEY_CACHE_SECONDS + 0.1)
    with pytest.raises(auth.AuthError):
        auth.principal_for(f"Bearer {created['key']}", None)
    assert owner.client().delete(f"/api/keys/{created['id']}").status_code == 200


def test_an_expired_key_is_refused(owner):
    created = owner.client().post(
        "/api/keys", {"name": "short", "expires_at": (timezone.now() + timedelta(seconds=1)).isoformat()},
        format="json").json()["data"]
    ApiKey.objects.filter(pk=created["id"]).update(expires_at=timezone.now() - timedelta(seconds=1))
    auth.clear_principal_cache()
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {created['key']}")
    assert client.get("/api/keys").status_code == 401


@pytest.mark.parametrize("body, message", [
    ({}, "name: This field is required."),
    ({"name": ""}, "name: This field may not be blank."),
    ({"name": "x" * 101}, "name: Ensure this field has no more than 100 characters."),
    ({"name": "k", "expires_at": "tomorrow"}, "expires_at: Datetime has wrong format"),
    ({"name": "k", "allowed_models": "acme-llm"}, "allowed_models: Expected a list"),
    ({"name": 7}, "name: Must be a string."),
])
def test_bad_key_requests_get_a_clear_400(owner, body, message):
    response = owner.client().post("/api/keys", body, format="json")
    assert response.status_code == 400
    assert response.json()["success"] is False
    assert response.json()["message"].startswith(message)
    assert ApiKey.objects.count() == 1  # nothing half-written


@pytest.mark.parametrize("body, status, message", [
    ({"name": "k", "expires_at": "2001-01-01T00:00:00Z"}, 422, "expires_at: must be in the future"),
    ({"name": "k", "allowed_models": ["no-such-block"]}, 404, "allowed_models: unknown block 'no-such-block'"),
])
def test_a_key_that_would_be_born_expired_is_422_and_one_for_a_missing_model_404(owner, body, status, message):
    response = owner.client().post("/api/keys", body, format="json")
    assert response.status_code == status
    assert response.json()["message"] == message
    assert ApiKey.objects.count() == 1


def test_allowed_models_accept_visible_blocks_only(owner, outsider):
    BlockFactory(organization=owner.organization, block_id="acme-llm")
    BlockFactory(organization=outsider.organization, block_id="globex-secret")
    ok = owner.client().post("/api/keys", {"name": "n", "allowed_models": ["acme-llm"]}, format="json")
    assert ok.status_code == 201 and ok.json()["data"]["allowedModels"] == ["acme-llm"]
    foreign = owner.client().post("/api/keys", {"name": "n", "allowed_models": ["globex-secret"]}, format="json")
    assert foreign.status_code == 404
    # Word for word what a block that does not exist gets.
    assert foreign.json()["message"] == "allowed_models: unknown block 'globex-secret'"


def test_another_organizations_key_is_a_404(owner, outsider):
    theirs = ApiKey.objects.get(name="mallory-key").pk
    for call in (lambda c: c.get(f"/api/keys/{theirs}"), lambda c: c.delete(f"/api/keys/{theirs}"),
                 lambda c: c.post(f"/api/keys/{theirs}/revoke")):
        response = call(owner.client())
        assert response.status_code == 404
        assert response.json() == {"success": False, "message": "Not found."}
    assert ApiKey.objects.get(pk=theirs).revoked_at is None
    assert "mallory-key" not in str(owner.client().get("/api/keys").json())


def test_every_api_call_needs_a_key_and_health_does_not(anon, db):
    for path in ("/api/keys", "/api/policies", "/api/quotas", "/api/usage", "/api/whoami", "/api/orgs/acme/members"):
        response = anon.get(path)
        assert response.status_code in (401, 403), path
        assert response.json()["success"] is False
    assert anon.post("/discovery/estimate", {}, format="json").status_code in (401, 403)
    assert anon.get("/healthz").status_code == 200


def test_members_are_listed_for_your_own_organization_only(owner, member, outsider):
    response = member.client().get("/api/orgs/acme/members")
    assert response.status_code == 200
    assert response.json()["data"] == [{"username": "alice", "role": "owner"}, {"username": "bob", "role": "member"}]
    for path in ("/api/orgs/globex/members", "/api/orgs/globex", "/api/orgs/nowhere/members"):
        answer = owner.client().get(path)
        assert answer.status_code == 404 and answer.json()["message"] == "Not found."
    assert outsider.client().get("/api/orgs/acme/members").status_code == 404
    assert owner.client().get("/api/orgs/acme").json()["data"] == {"slug": "acme", "name": "Acme", "role": "owner"}


def test_whoami_names_the_organization_and_role(member):
    data = member.client().get("/api/whoami").json()["data"]
    assert (data["organization"], data["role"], data["apiKey"]["name"]) == ("acme", "member", "bob-key")


def test_a_key_minted_keyless_in_the_embedded_default_acts_as_the_owner_that_minted_it(settings, db):
    from rest_framework.test import APIClient

    settings.DEV_OPEN_ACCESS = True  # the embedded default: keyless calls from loopback are the owner's
    minted = APIClient().post("/api/keys", {"name": "laptop"}, format="json").json()["data"]["key"]
    settings.DEV_OPEN_ACCESS = False

    keyed = APIClient()
    keyed.credentials(HTTP_AUTHORIZATION=f"Bearer {minted}")
    assert keyed.get("/api/whoami").json()["data"]["role"] == "owner"
    second = keyed.post("/api/keys", {"name": "second"}, format="json")
    assert second.status_code == 201
    assert ApiKey.objects.get(pk=second.json()["data"]["id"]).role == "owner"


def test_a_key_whose_creator_was_deleted_keeps_member_rights_only(owner):
    owner.user.delete()
    response = owner.client().post("/api/keys", {"name": "orphan"}, format="json")
    assert response.status_code == 403
    assert owner.client().get("/api/whoami").json()["data"]["role"] == "member"
