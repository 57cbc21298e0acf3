"""API keys through the Django admin: made with the raw key shown once, revoked by an action."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from rest_framework.test import APIClient

from registry.models import ApiKey, hash_api_key

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(owner) -> Client:
    staff = get_user_model().objects.create_superuser("root", "root@example.com", "pw-root")
    owner.organization.memberships.create(user=staff, role="owner")
    client = Client()
    client.force_login(staff)
    return client


def works(raw: str) -> bool:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client.get("/api/whoami").status_code == 200


def test_a_key_made_in_the_admin_is_shown_once_stored_hashed_and_works(admin_client, owner):
    response = admin_client.post("/admin/registry/apikey/add/", {
        "organization": owner.organization.pk, "name": "from-admin", "allowed_models": "[]",
    }, follow=True)
    assert response.status_code == 200
    shown = re.findall(r"sb-[A-Za-z0-9_-]{20,}", response.content.decode())
    assert len(shown) == 1
    raw = shown[0]
    key = ApiKey.objects.get(name="from-admin")
    assert key.hashed_key == hash_api_key(raw) and raw not in str(key.__dict__)
    assert key.created_by.username == "root"
    assert works(raw)

    # Never again: the change page and the list show the prefix only.
    for page in (f"/admin/registry/apikey/{key.pk}/change/", "/admin/registry/apikey/"):
        assert raw not in admin_client.get(page).content.decode()


def test_the_admin_revoke_action_stops_a_key_at_once(admin_client, owner):
    key = ApiKey.objects.get(name="alice-key")
    assert works(owner.key)
    response = admin_client.post("/admin/registry/apikey/", {
        "action": "revoke", "_selected_action": [key.pk]}, follow=True)
    assert response.status_code == 200
    key.refresh_from_db()
    assert key.revoked_at is not None
    assert not works(owner.key)


def test_a_member_of_staff_without_permissions_cannot_reach_the_keys(owner):
    staff = get_user_model().objects.create_user("clerk", password="pw-clerk", is_staff=True)
    client = Client()
    client.force_login(staff)
    assert client.get("/admin/registry/apikey/add/").status_code == 403
