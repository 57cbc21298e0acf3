"""Browser-less clients for the dashboard pages: one logged-in Django test client per party."""

from __future__ import annotations

import pytest
from django.test import Client


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def owner_browser(owner) -> Client:
    return logged_in(owner.user)


@pytest.fixture
def member_browser(member) -> Client:
    return logged_in(member.user)


@pytest.fixture
def outsider_browser(outsider) -> Client:
    return logged_in(outsider.user)
