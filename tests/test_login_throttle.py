"""Failed logins on the dashboard and the admin are limited per username and per client address
(issue 8, item 5: "forty wrong dashboard passwords in a row are all answered, with no slow-down").

The counts live in Django's cache, the suite's real Redis.
"""

from __future__ import annotations

import time

import pytest
from django.core.cache import cache
from django.test import Client

LOGIN_PAGES = ["/login/", "/admin/login/"]


@pytest.fixture(autouse=True)
def _no_counts_left_behind():
    def clear():
        backend = cache._cache if hasattr(cache, "_cache") else None
        if backend is not None and hasattr(backend, "get_client"):  # Redis: only this module's keys
            client = backend.get_client(write=True)
            for key in client.scan_iter(match="*login-throttle*"):
                client.delete(key)
        else:
            cache.clear()

    clear()
    yield
    clear()


@pytest.fixture
def staff(owner, member):
    for party in (owner, member):
        party.user.is_staff = True
        party.user.save(update_fields=["is_staff"])
    return owner


def log_in(page: str, username: str, password: str, address: str = "10.0.0.1", client: Client | None = None):
    return (client or Client()).post(page, {"username": username, "password": password}, REMOTE_ADDR=address)


def logged_in(response) -> bool:
    return response.status_code == 302


@pytest.mark.parametrize("page", LOGIN_PAGES)
def test_a_username_is_locked_out_after_five_failed_logins_even_with_the_right_password(staff, page):
    for _ in range(5):
        assert log_in(page, "alice", "wrong").status_code == 200
    refused = log_in(page, "alice", "pw-alice")
    assert refused.status_code == 429
    assert int(refused["Retry-After"]) > 800
    assert b"Too many failed logins" in refused.content


def test_forty_wrong_dashboard_passwords_in_a_row_are_not_all_answered(owner):
    statuses = [log_in("/login/", "alice", f"guess-{n}").status_code for n in range(40)]
    assert statuses == [200] * 5 + [429] * 35


@pytest.mark.parametrize("page", LOGIN_PAGES)
def test_a_locked_out_username_is_refused_from_every_address(staff, page):
    for n in range(5):
        log_in(page, "alice", "wrong", address=f"10.0.1.{n}")
    assert log_in(page, "alice", "pw-alice", address="192.0.2.7").status_code == 429


@pytest.mark.parametrize("page", LOGIN_PAGES)
def test_a_locked_out_username_does_not_lock_out_a_colleague(staff, page):
    for n in range(5):
        log_in(page, "alice", "wrong", address=f"10.0.1.{n}")
    assert logged_in(log_in(page, "bob", "pw-bob", address="10.0.1.0"))


def test_another_organizations_user_cannot_lock_out_this_organizations_users_by_failing_as_themselves(owner,
                                                                                                     outsider):
    for _ in range(10):
        log_in("/login/", "mallory", "wrong", address="198.51.100.1")
    assert logged_in(log_in("/login/", "alice", "pw-alice", address="10.0.0.1"))


@pytest.mark.parametrize("page", LOGIN_PAGES)
def test_an_address_is_locked_out_after_failures_across_usernames(staff, settings, page):
    settings.LOGIN_FAILURE_LIMIT_PER_ADDRESS = 8
    for n in range(8):
        assert log_in(page, f"nobody-{n}", "wrong", address="203.0.113.9").status_code == 200
    assert log_in(page, "alice", "pw-alice", address="203.0.113.9").status_code == 429
    # The same user from elsewhere is not refused: it was the address that failed.
    assert logged_in(log_in(page, "alice", "pw-alice", address="10.0.0.1"))


@pytest.mark.parametrize("page", LOGIN_PAGES)
def test_a_successful_login_resets_the_failure_count(staff, page):
    for _ in range(4):
        log_in(page, "alice", "wrong")
    assert logged_in(log_in(page, "alice", "pw-alice"))
    for _ in range(4):
        assert log_in(page, "alice", "wrong").status_code == 200
    assert logged_in(log_in(page, "alice", "pw-alice"))


def test_the_lockout_ends_after_the_cool_off_period(owner, settings):
    settings.LOGIN_LOCKOUT_S = 1
    for _ in range(5):
        log_in("/login/", "alice", "wrong")
    assert log_in("/login/", "alice", "pw-alice").status_code == 429
    time.sleep(1.1)
    assert logged_in(log_in("/login/", "alice", "pw-alice"))


def test_a_logged_in_user_cannot_reset_someone_elses_count_by_guessing_from_their_session(owner, member):
    session = Client()
    session.force_login(member.user)
    for _ in range(5):
        log_in("/login/", "alice", "wrong", client=session)
    assert log_in("/login/", "alice", "pw-alice").status_code == 429


def test_usernames_are_counted_whatever_their_case(owner):
    for name in ("alice", "Alice", "ALICE", "aLiCe", "alicE"):
        log_in("/login/", name, "wrong")
    assert log_in("/login/", "alice", "pw-alice").status_code == 429
