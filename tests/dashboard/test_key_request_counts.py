"""The keys page counts each key's requests over the last 24 h and 7 d from the request log, beside its
quota use, and each count links to the /logs/ page filtered by that key and time, which lists the same
number of requests."""

from __future__ import annotations

import html
import re
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from inference.models import RequestLogEntry
from registry.models import ApiKey
from registry.services import api_key_create
from registry.tenancy.models import Quota
from tests.dashboard.conftest import logged_in

COUNT = re.compile(r'<a href="([^"]+)" class="key-requests" data-window="(\w+)"[^>]*>(\d+)</a>')


@pytest.fixture
def traffic(owner, outsider):
    """alice-key: 3 in the last hour, 1 two days ago, 1 eight days ago; spare (revoked since): 2 an
    hour ago; a dashboard session's request (no key); another organization's 4 requests."""
    alice = ApiKey.objects.get(organization=owner.organization, name="alice-key")
    spare, _ = api_key_create(organization=owner.organization, name="spare", created_by=owner.user)
    theirs = ApiKey.objects.get(organization=outsider.organization)
    now = timezone.now()

    def rows(org, key, count, age):
        RequestLogEntry.objects.bulk_create([
            RequestLogEntry(organization=org, created_at=now - age, api_key=key, key_label=key.name if key else "",
                            model="acme-chat", status=200 if i else 429, latency_ms=1) for i in range(count)])

    rows(owner.organization, alice, 3, timedelta(minutes=5))
    rows(owner.organization, alice, 1, timedelta(days=2))
    rows(owner.organization, alice, 1, timedelta(days=8))
    rows(owner.organization, spare, 2, timedelta(hours=1))
    rows(owner.organization, None, 1, timedelta(minutes=1))
    rows(outsider.organization, theirs, 4, timedelta(minutes=5))
    spare.revoked_at = now
    spare.save(update_fields=["revoked_at"])
    return {"alice": alice, "spare": spare, "theirs": theirs}


def counts_on(page: str, key: ApiKey) -> dict[str, tuple[int, str]]:
    """{window: (count, link)} in the key's row of the keys page."""
    row = re.search(rf'<tr id="key-{key.pk}">(.*?)</tr>', page, re.S)
    assert row is not None, f"no row for key {key.name}"
    return {window: (int(count), html.unescape(url)) for url, window, count in COUNT.findall(row.group(1))}


def keys_page(client: Client) -> str:
    response = client.get("/org/keys/")
    assert response.status_code == 200
    return response.content.decode()


def test_the_keys_page_counts_each_keys_requests_over_24_hours_and_7_days(owner, traffic):
    page = keys_page(logged_in(owner.user))
    assert {w: c for w, (c, _) in counts_on(page, traffic["alice"]).items()} == {"24h": 3, "7d": 4}
    assert {w: c for w, (c, _) in counts_on(page, traffic["spare"]).items()} == {"24h": 2, "7d": 2}


def test_a_key_without_requests_shows_zero(owner, traffic):
    quiet, _ = api_key_create(organization=owner.organization, name="quiet", created_by=owner.user)
    counts = counts_on(keys_page(logged_in(owner.user)), quiet)
    assert {w: c for w, (c, _) in counts.items()} == {"24h": 0, "7d": 0}


def test_each_count_agrees_with_the_request_log_filtered_by_that_key(owner, traffic):
    client = logged_in(owner.user)
    page = keys_page(client)
    checked = 0
    for key in (traffic["alice"], traffic["spare"]):
        for window, (count, url) in counts_on(page, key).items():
            assert url.startswith("/logs/?") and f"key={key.pk}" in url
            listed = client.get(url)
            assert listed.status_code == 200, (window, url)
            shown = re.search(r"<p>(\d+) requests?[,.]", listed.content.decode())
            assert shown is not None and int(shown.group(1)) == count, (key.name, window)
            assert len(re.findall(r'href="/logs/\d+/"', listed.content.decode())) == count
            checked += 1
    assert checked == 4


def test_the_counts_sit_beside_the_quota_use(owner, traffic):
    Quota.objects.create(organization=owner.organization, api_key=traffic["alice"], requests_per_minute=30)
    row = re.search(rf'<tr id="key-{traffic["alice"].pk}">(.*?)</tr>', keys_page(logged_in(owner.user)), re.S)
    assert row is not None
    assert 'data-label="Requests"' in row.group(1) and "requests / min: 0 / 30" in row.group(1)


def test_a_member_sees_the_same_counts(owner, member, traffic):
    owners = keys_page(logged_in(owner.user))
    members = keys_page(logged_in(member.user))
    for key in (traffic["alice"], traffic["spare"]):
        assert counts_on(members, key) == counts_on(owners, key)


def test_an_outsider_sees_only_its_own_keys_and_requests(outsider, traffic):
    page = keys_page(logged_in(outsider.user))
    assert f'id="key-{traffic["alice"].pk}"' not in page and "alice-key" not in page
    assert {w: c for w, (c, _) in counts_on(page, traffic["theirs"]).items()} == {"24h": 4, "7d": 4}


def test_an_outsider_following_a_link_to_another_organizations_key_gets_a_400_not_its_rows(owner, outsider, traffic):
    _, url = counts_on(keys_page(logged_in(owner.user)), traffic["alice"])["24h"]
    response = logged_in(outsider.user).get(url)
    assert response.status_code == 400 and not re.findall(r'href="/logs/\d+/"', response.content.decode())


def test_junk_in_the_keys_pages_query_string_is_ignored(owner, traffic):
    for query in ({"window": "\x00"}, {"key": "abc"}, {"since": "never"}):
        assert logged_in(owner.user).get("/org/keys/", query).status_code == 200


def test_anonymous_visitors_go_to_the_login_page(db):
    assert Client().get("/org/keys/").status_code == 302
