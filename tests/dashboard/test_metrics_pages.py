"""The metrics pages and the API read the same rollups: a block's page, its row on the
organization's page and GET /api/blocks/<id>/metrics agree, in every window."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from inference import metrics
from inference.models import BlockMetricBucket
from registry.models import Block, BlockGrant
from tests.dashboard.conftest import logged_in
from tests.factories import BlockFactory


def browser(party) -> Client:
    return logged_in(party.user)


def numbers(html: str, scope: str = "") -> dict[str, int]:
    """The data-metric numbers of the page's totals (or of one block's row: scope='<reference>')."""
    if scope:
        html = re.search(rf'<tr data-block="{re.escape(scope)}">(.*?)</tr>', html, re.S).group(1)
    else:
        html = re.search(r'<dl class="cards".*?</dl>', html, re.S).group(0)
    return {name: int(value) for name, value in re.findall(r'data-metric="(\w+)">(\d+)<', html)}


@pytest.fixture
def traffic(owner, outsider):
    """acme's two blocks with requests from acme, one of them public and called by globex too."""
    first = BlockFactory(organization=owner.organization, block_id="acme-first", visibility=Block.PUBLIC)
    second = BlockFactory(organization=owner.organization, block_id="acme-second")
    for block, org, latency, ok in [(first, owner.organization, 10, True), (first, owner.organization, 20, True),
                                    (first, owner.organization, 900, False), (second, owner.organization, 40, True),
                                    (first, outsider.organization, 30, True)]:
        metrics.record(block_pk=block.pk, organization_pk=org.pk, ok=ok, latency_ms=latency, ttft_ms=latency / 4,
                       tokens_in=7, tokens_out=11 if ok else 0)
    # An hour and a half ago: in the 24 h and 7 d windows, not in 1 h.
    old = (timezone.now() - timedelta(minutes=90)).replace(second=0, microsecond=0)
    BlockMetricBucket.objects.create(block=second, organization=owner.organization, minute=old, requests=5,
                                     errors=1, tokens_in=50, tokens_out=60, latency_ms_sum=500,
                                     latency_hist={"100": 5})
    metrics.flush_now()
    return {"first": first, "second": second}


@pytest.mark.parametrize("window", ["1h", "24h", "7d"])
def test_the_block_pages_the_organization_page_and_the_api_agree(owner, traffic, window):
    client = browser(owner)
    org_page = client.get("/usage/", {"window": window}).content.decode()
    total = numbers(org_page)
    rows = [numbers(org_page, reference) for reference in ("acme-first", "acme-second")]
    # The organization's total is the sum of its rows.
    for name in ("requests", "errors", "tokensIn", "tokensOut"):
        assert total[name] == sum(row[name] for row in rows)
    for reference, row in zip(("acme-first", "acme-second"), rows, strict=True):
        page = numbers(client.get(f"/usage/blocks/{reference}/", {"window": window}).content.decode())
        api = owner.client().get(f"/api/blocks/{reference}/metrics", {"window": window}).json()["data"]
        assert page["requests"] == api["requests"] and page["errors"] == api["errors"]
        assert page["tokensIn"] == api["tokensIn"] and page["tokensOut"] == api["tokensOut"]
        if reference == "acme-second":
            assert row == page  # only acme calls it: the organization's row is the block's page
        if window in ("1h", "24h"):
            # The registry's block page (webapp/dashboard/registry_views.py) shows the same rollup.
            block = traffic[reference.removeprefix("acme-")]
            detail = client.get(f"/blocks/{block.pk}/").content.decode()
            shown = re.search(rf'<td data-label="Window">{window}</td><td data-label="Requests">(\d+)</td>'
                              r'<td data-label="Errors">(\d+)</td>', detail)
            assert (int(shown.group(1)), int(shown.group(2))) == (api["requests"], api["errors"])
    expected_second = 1 if window == "1h" else 6
    assert rows[1]["requests"] == expected_second


def test_a_block_page_shows_its_owner_every_caller_and_a_caller_only_itself(owner, outsider, traffic):
    mine = numbers(browser(owner).get("/usage/blocks/acme-first/").content.decode())
    theirs = numbers(browser(outsider).get("/usage/blocks/acme/acme-first/").content.decode())
    assert mine["requests"] == 4 and theirs["requests"] == 1
    api = outsider.client().get("/api/blocks/acme/acme-first/metrics").json()["data"]
    assert api["requests"] == theirs["requests"] == 1
    # The organization page is the requests the organization made: globex made one.
    assert numbers(browser(outsider).get("/usage/").content.decode())["requests"] == 1


def test_the_chart_carries_the_windows_requests(owner, traffic):
    page = browser(owner).get("/usage/").content.decode()
    chart = re.search(r'<svg class="chart"[^>]*data-requests="(\d+)" data-points="(\d+)"', page)
    assert int(chart.group(1)) == numbers(page)["requests"] == 4
    assert int(chart.group(2)) == 61  # one point a minute, the current one included
    assert page.count('class="bar"') >= 1


def test_an_htmx_poll_gets_the_partial_only(owner, traffic):
    body = browser(owner).get("/usage/", {"window": "24h"}, HTTP_HX_REQUEST="true").content.decode()
    assert body.lstrip().startswith('<dl class="cards" data-window="24h"') and "<html" not in body


def test_a_member_reads_the_metrics_pages_too(member, traffic):
    assert numbers(browser(member).get("/usage/").content.decode())["requests"] == 4
    assert browser(member).get("/usage/blocks/acme-second/").status_code == 200


def test_another_organizations_private_block_is_404(outsider, traffic):
    assert browser(outsider).get("/usage/blocks/acme/acme-second/").status_code == 404
    assert browser(outsider).get("/usage/blocks/acme-second/").status_code == 404


def test_a_granted_block_shows_the_grantee_its_own_requests(outsider, traffic):
    BlockGrant.objects.create(block=traffic["second"], organization=outsider.organization)
    assert numbers(browser(outsider).get("/usage/blocks/acme/acme-second/").content.decode())["requests"] == 0


def test_an_unknown_window_is_404_not_500(owner, traffic):
    assert browser(owner).get("/usage/", {"window": "30d"}).status_code == 404
    assert browser(owner).get("/usage/blocks/acme-first/", {"window": "1m\x00"}).status_code in (400, 404)


def test_anonymous_visitors_go_to_the_login_page(db):
    response = Client().get("/usage/")
    assert response.status_code == 302 and response["Location"].startswith("/login/")


def test_a_user_without_an_organization_gets_403(db):
    client = Client()
    client.force_login(get_user_model().objects.create_user(username="loner", password="pw"))
    assert client.get("/usage/").status_code == 403
