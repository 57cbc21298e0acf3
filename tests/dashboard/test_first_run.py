"""The first-run path without /admin/: `manage.py create_owner` makes the first owner, and the admin
never shows a block's upstream api_key in clear."""

from __future__ import annotations

import io
import re

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.test import Client

from registry.models import Membership, Organization
from tests.factories import BlockFactory


def test_create_owner_creates_the_org_and_user_and_prints_how_to_log_in(db):
    out = io.StringIO()
    call_command("create_owner", "dana", "--org", "dana-co", stdout=out)
    text = out.getvalue()
    password = re.search(r"with the password (\S+) ", text).group(1)
    assert "/login/" in text
    assert Membership.objects.get(user__username="dana", organization__slug="dana-co").role == Membership.OWNER
    client = Client()
    assert client.post("/login/", {"username": "dana", "password": password}).status_code == 302
    assert "dana-co" in client.get("/").content.decode()


def test_create_owner_promotes_an_existing_user_and_keeps_their_password(member):
    out = io.StringIO()
    call_command("create_owner", "bob", "--org", "acme", stdout=out)
    assert "with their password" in out.getvalue()
    assert Membership.objects.get(user=member.user).role == Membership.OWNER
    assert get_user_model().objects.get(username="bob").check_password("pw-bob")
    assert Organization.objects.filter(slug="acme").count() == 1


def test_create_owner_refuses_a_bad_slug(db):
    with pytest.raises(CommandError, match="not a slug"):
        call_command("create_owner", "erin", "--org", "no spaces")


def test_the_admin_shows_a_blocks_api_key_masked(owner):
    block = BlockFactory(organization=owner.organization, backend_type="openai",
                         backend_config={"base_url": "https://api.example.com/v1", "api_key": "sk-very-secret"})
    admin = get_user_model().objects.create_superuser(username="root", password="x")
    client = Client()
    client.force_login(admin)
    html = client.get(f"/admin/registry/block/{block.pk}/change/").content.decode()
    assert "sk-very-secret" not in html and "***" in html
