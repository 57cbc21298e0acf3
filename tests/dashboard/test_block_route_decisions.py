"""A block's page lists the recent requests in which `model: "auto"` chose it (time, route and reason,
status), from the request log and under its rule: an organization sees only the requests it made."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from inference.models import RequestLogEntry
from registry.models import Block
from tests.dashboard.conftest import logged_in
from tests.factories import BlockFactory


def route(**fields) -> dict:
    return {"model": "auto", "mode": "tags", "policy": "cosine", "score": 0.91, "runnerUp": None,
            "runnerUpScore": None, "reason": None, "planner": None, "source": None, "defaultBlock": False} | fields


@pytest.fixture
def blocks(owner, outsider):
    return {"chat": BlockFactory(organization=owner.organization, block_id="acme-chat", visibility=Block.PUBLIC),
            "other": BlockFactory(organization=owner.organization, block_id="acme-other"),
            "private": BlockFactory(organization=owner.organization, block_id="acme-private")}


@pytest.fixture
def decisions(owner, outsider, blocks):
    now = timezone.now()

    def row(org, **fields):
        values = dict(organization=org, created_at=now, model="acme-chat", block=blocks["chat"], status=200,
                      latency_ms=10, route=route())
        return RequestLogEntry.objects.create(**(values | fields))

    return {
        "planned": row(owner.organization, created_at=now - timedelta(minutes=1),
                       route=route(mode="planner", reason="code question, <b>bold</b> claim", source="planner")),
        "failed": row(owner.organization, status=502, error="upstream down"),
        "named": row(owner.organization, route=None),
        "elsewhere": row(owner.organization, block=blocks["other"], model="acme-other"),
        "theirs": row(outsider.organization, model="acme/acme-chat", route=route(reason="globex's secret plan")),
    }


def rows_on(page: str) -> set[str]:
    return set(re.findall(r'<tr class="route-decision[^"]*"[^>]*>\s*<td data-label="Time \(UTC\)"><a href="/logs/(\d+)/"',
                          page))


def pks(*entries) -> set[str]:
    return {str(e.pk) for e in entries}


def page_of(client: Client, block: Block) -> str:
    response = client.get(f"/blocks/{block.pk}/")
    assert response.status_code == 200
    return response.content.decode()


def test_the_owner_sees_the_auto_decisions_that_chose_the_block_with_route_reason_and_status(
        owner, blocks, decisions):
    page = page_of(logged_in(owner.user), blocks["chat"])
    assert rows_on(page) == pks(decisions["planned"], decisions["failed"])
    assert "planner · cosine · score 0.910" in page and "(planner)" in page
    assert 'data-status="502"' in page
    # The newest first, as the request log lists them.
    assert page.index(f'/logs/{decisions["failed"].pk}/') < page.index(f'/logs/{decisions["planned"].pk}/')


def test_a_model_picked_reason_is_escaped_not_rendered(owner, blocks, decisions):
    page = page_of(logged_in(owner.user), blocks["chat"])
    assert "&lt;b&gt;bold&lt;/b&gt;" in page and "<b>bold</b>" not in page


def test_a_member_sees_the_same_decisions(member, blocks, decisions):
    assert rows_on(page_of(logged_in(member.user), blocks["chat"])) == pks(decisions["planned"], decisions["failed"])


def test_the_owner_does_not_see_another_organizations_decisions_on_its_own_public_block(owner, blocks, decisions):
    assert "globex&#x27;s secret plan" not in page_of(logged_in(owner.user), blocks["chat"])


def test_an_outsider_sees_only_its_own_decisions_on_a_public_block(outsider, blocks, decisions):
    page = page_of(logged_in(outsider.user), blocks["chat"])
    assert rows_on(page) == pks(decisions["theirs"])
    assert "code question" not in page and "upstream down" not in page


def test_an_outsider_gets_404_for_another_organizations_private_block(outsider_browser, blocks, decisions):
    assert outsider_browser.get(f"/blocks/{blocks['other'].pk}/").status_code == 404


def test_a_block_no_auto_request_chose_says_so(owner, blocks, decisions):
    page = page_of(logged_in(owner.user), blocks["private"])
    assert not rows_on(page) and 'No request of yours with <code>model: "auto"</code> has chosen this block' in page


def test_the_page_links_to_the_blocks_requests_in_the_log_and_that_link_works(owner, blocks, decisions):
    client = logged_in(owner.user)
    assert 'href="/logs/?block=acme-chat"' in page_of(client, blocks["chat"])
    listed = client.get("/logs/", {"block": "acme-chat"})
    assert listed.status_code == 200 and "3 requests" in listed.content.decode()


def test_the_page_shows_the_latest_twenty_decisions(owner, blocks):
    now = timezone.now()
    RequestLogEntry.objects.bulk_create([
        RequestLogEntry(organization=owner.organization, created_at=now - timedelta(seconds=i), model="acme-chat",
                        block=blocks["chat"], status=200, latency_ms=1, route=route()) for i in range(25)])
    assert len(rows_on(page_of(logged_in(owner.user), blocks["chat"]))) == 20


@pytest.mark.parametrize("odd", [{}, {"mode": None, "score": "n/a", "reason": 7}, ["not", "an", "object"], "text"])
def test_a_route_of_an_unexpected_shape_is_shown_without_a_500(owner, blocks, odd):
    RequestLogEntry.objects.create(organization=owner.organization, created_at=timezone.now(), model="acme-chat",
                                   block=blocks["chat"], status=200, latency_ms=1, route=odd)
    assert len(rows_on(page_of(logged_in(owner.user), blocks["chat"]))) == 1


def test_an_unknown_block_is_404_and_anonymous_visitors_go_to_the_login_page(owner_browser, blocks):
    assert owner_browser.get("/blocks/999999/").status_code == 404
    assert Client().get(f"/blocks/{blocks['chat'].pk}/").status_code == 302
