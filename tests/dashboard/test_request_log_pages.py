"""The request log page: the organization's requests only, filtered by block, key, status and
time, paginated; bad filters answer 400 with the error in place; only owners change what is kept."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from inference.models import RequestLogEntry, RequestLogSettings
from registry.models import ApiKey
from tests.dashboard.conftest import logged_in
from tests.factories import BlockFactory


def browser(party) -> Client:
    return logged_in(party.user)


@pytest.fixture
def log(owner, outsider):
    block = BlockFactory(organization=owner.organization, block_id="acme-chat")
    other = BlockFactory(organization=owner.organization, block_id="acme-other")
    key = ApiKey.objects.get(organization=owner.organization, name="alice-key")
    now = timezone.now()

    def row(org, **fields):
        values = dict(organization=org, created_at=now, model="acme-chat", block=block, status=200, latency_ms=10,
                      key_label="alice-key (sb-…)", api_key=key)
        return RequestLogEntry.objects.create(**(values | fields))

    rows = {
        "ok": row(owner.organization, request_id="ok-1", prompt=[{"role": "user", "content": "hush"}], answer="yes"),
        "failed": row(owner.organization, request_id="bad-1", status=502, error="upstream down"),
        "other": row(owner.organization, request_id="other-1", block=other, model="acme-other", api_key=None,
                     key_label="session: alice"),
        "old": row(owner.organization, request_id="old-1", created_at=now - timedelta(days=2)),
        "theirs": row(outsider.organization, request_id="theirs-1", model="globex-x", block=None, api_key=None),
    }
    return rows


def ids_on(page: str) -> set[str]:
    return set(re.findall(r'href="/logs/(\d+)/"', page))


def pks(*entries) -> set[str]:
    return {str(e.pk) for e in entries}


def test_the_log_lists_the_organizations_requests_only(owner, log):
    page = browser(owner).get("/logs/").content.decode()
    assert ids_on(page) == pks(log["ok"], log["failed"], log["other"], log["old"])
    assert "upstream down" in page and "4 requests" in page


@pytest.mark.parametrize(("query", "expected"), [
    ({"block": "acme-other"}, ["other"]),
    ({"status": "error"}, ["failed"]),
    ({"status": "ok"}, ["ok", "other", "old"]),
    ({"status": "502"}, ["failed"]),
])
def test_the_log_filters_by_block_and_status(owner, log, query, expected):
    assert ids_on(browser(owner).get("/logs/", query).content.decode()) == pks(*(log[n] for n in expected))


def test_the_log_filters_by_key_and_time(owner, log):
    key = ApiKey.objects.get(organization=owner.organization, name="alice-key")
    by_key = browser(owner).get("/logs/", {"key": key.pk}).content.decode()
    assert ids_on(by_key) == pks(log["ok"], log["failed"], log["old"])
    since = (timezone.now() - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    recent = browser(owner).get("/logs/", {"since": since}).content.decode()
    assert ids_on(recent) == pks(log["ok"], log["failed"], log["other"])


def test_the_log_pages_through_many_requests(owner, log):
    now = timezone.now()
    RequestLogEntry.objects.bulk_create([RequestLogEntry(organization=owner.organization, created_at=now,
                                                         model="acme-chat", status=200, latency_ms=1)
                                         for _ in range(60)])
    first = browser(owner).get("/logs/").content.decode()
    assert "64 requests, page 1 of 2" in first and len(ids_on(first)) == 50
    second = browser(owner).get("/logs/", {"page": 2}).content.decode()
    assert len(ids_on(second)) == 14 and not ids_on(first) & ids_on(second)


@pytest.mark.parametrize("query", [
    {"block": "globex-x"}, {"block": "no-such-block"}, {"key": "999999"}, {"key": "abc"}, {"status": "teapot"},
    {"since": "yesterday"}, {"since": "2026-01-02T00:00", "until": "2026-01-01T00:00"},
    {"block": "acme-chat\x00"}, {"key": "\x00"}, {"status": "ok\x00"}, {"until": "\x00"},
])
def test_a_bad_filter_is_a_400_with_the_error_in_place(owner, log, query):
    response = browser(owner).get("/logs/", query)
    assert response.status_code == 400
    assert 'class="error" role="alert"' in response.content.decode()


def test_another_organizations_key_is_not_a_filter_choice(owner, outsider, log):
    theirs = ApiKey.objects.get(organization=outsider.organization)
    assert browser(owner).get("/logs/", {"key": theirs.pk}).status_code == 400


def test_one_requests_page_shows_its_prompt_and_answer_when_kept(owner, log):
    page = browser(owner).get(f"/logs/{log['ok'].pk}/").content.decode()
    assert "hush" in page and "yes" in page


def test_another_organizations_request_is_404(owner, outsider, log):
    assert browser(outsider).get(f"/logs/{log['ok'].pk}/").status_code == 404
    assert browser(owner).get(f"/logs/{log['theirs'].pk}/").status_code == 404


def test_a_member_reads_the_log_but_cannot_change_what_is_kept(member, log):
    client = browser(member)
    page = client.get("/logs/").content.decode()
    assert "Only an owner changes this." in page and "store_content" not in page
    assert client.post("/logs/settings", {"store_content": "on"}).status_code == 403
    assert not RequestLogSettings.objects.filter(store_content=True).exists()


def test_an_owner_turns_content_logging_on_and_off(owner, log):
    client = browser(owner)
    assert client.post("/logs/settings", {"store_content": "on"}).status_code == 302
    assert RequestLogSettings.objects.get(organization=owner.organization).store_content
    assert client.post("/logs/settings", {}).status_code == 302
    assert not RequestLogSettings.objects.get(organization=owner.organization).store_content
    log["ok"].refresh_from_db()
    assert log["ok"].prompt is None and log["ok"].answer is None
    # Another organization's choice is its own.
    assert not RequestLogSettings.objects.exclude(organization=owner.organization).exists()


def test_a_page_number_that_is_not_one_shows_the_first_page(owner, log):
    for page in ("\x00", "-1", "abc", "99999"):
        assert browser(owner).get("/logs/", {"page": page}).status_code == 200


def test_the_settings_switch_takes_post_only(owner, log):
    assert browser(owner).get("/logs/settings").status_code == 405


def test_anonymous_visitors_go_to_the_login_page(db):
    assert Client().get("/logs/").status_code == 302
    assert Client().post("/logs/settings", {"store_content": "on"}).status_code == 302
