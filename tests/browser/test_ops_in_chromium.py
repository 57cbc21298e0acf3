"""The operator's pages in a real browser: publish a workflow, start a run, watch it pause at its
approval, approve it from the live queue and see the run finish; a metrics chart that has data after
traffic and keeps up with more. Console errors fail any of them (conftest.py)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import openai
import pytest
from django.utils import timezone
from playwright.sync_api import expect

from inference.models import RequestLogEntry
from tests.browser.conftest import log_in
from tests.factories import BlockFactory
from tests.support.live_server import LiveGateway, start_gateway
from tests.support.plain_http import request

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

REVIEWED = {"name": "reviewed", "version": "1", "nodes": [
    {"id": "draft", "type": "block", "block": "reverse", "prompt": "tfard", "output_format": "text"},
    {"id": "review", "type": "approval", "after": ["draft"], "review": {"summary": "{{ nodes.draft.output }}"},
     "approvers": {"role": "owner"}},
    {"id": "publish", "type": "block", "block": "reverse", "after": ["review"],
     "prompt": "{{ nodes.review.output.summary }}"}]}


@pytest.fixture
def workflow_site() -> Iterator[str]:
    """A gateway that runs workflow nodes itself (the session's gateway hands them to Celery, and no
    worker runs in these tests). Ask for it before `page`, so the page closes (and its open event
    feeds with it) before the gateway stops."""
    gateway: LiveGateway = start_gateway(WORKFLOW_EXECUTOR="inprocess", WORKFLOW_SWEEPER_THREAD="0")
    yield gateway.url.replace("127.0.0.1", "localhost")  # the Secure session cookie: see conftest.site
    gateway.stop()


def test_an_owner_uploads_a_workflow_approves_its_paused_run_and_sees_it_finish(workflow_site, page, owner,
                                                                                owner_login, screenshot):
    BlockFactory(organization=owner.organization, block_id="reverse", name="reverse")
    site = workflow_site
    log_in(page, site, *owner_login)
    page.goto(f"{site}/workflows/")
    page.get_by_label("Document (JSON or YAML)").fill(json.dumps(REVIEWED, indent=2))
    page.get_by_role("button", name="Publish").click()
    expect(page.locator("h1")).to_contain_text("reviewed")
    page.get_by_role("button", name="Start").click()
    expect(page).to_have_url(re.compile(r"/workflows/runs/\d+/$"))
    run_url = page.url
    # The page follows the run's events: the approval node turns `waiting` without a reload.
    expect(page.locator('svg.dag [data-node="review"]')).to_have_attribute("data-state", "waiting", timeout=30_000)
    expect(page.locator('svg.dag [data-node="draft"]')).to_have_attribute("data-state", "succeeded")
    screenshot(page, "run-waiting")

    page.goto(f"{site}/approvals/")
    item = page.locator("ul.queue li[data-approval]")
    expect(item).to_have_count(1)
    expect(item).to_contain_text("draft")
    expect(item.locator("time.countdown")).to_have_count(0)  # no deadline on this node
    screenshot(page, "queue")
    item.get_by_role("link").click()
    page.get_by_label("Comment").fill("looks right")
    page.get_by_role("button", name="Approve", exact=True).click()
    expect(page.locator("[data-state]").first).to_contain_text("approved")
    screenshot(page, "approved")

    page.goto(run_url)
    expect(page.locator("[data-run-state]")).to_have_attribute("data-run-state", "succeeded", timeout=30_000)
    expect(page.locator('svg.dag [data-node="publish"]')).to_have_attribute("data-state", "succeeded")
    expect(page.locator("#run")).to_contain_text("tfard")
    screenshot(page, "run-finished")
    page.goto(f"{site}/approvals/")
    expect(page.locator("ul.queue li[data-approval]")).to_have_count(0)
    expect(page.locator("table")).to_contain_text("looks right")


def test_the_approvals_queue_shows_a_new_approval_without_a_reload(workflow_site, page, owner, owner_login):
    BlockFactory(organization=owner.organization, block_id="reverse", name="reverse")
    site = workflow_site
    log_in(page, site, *owner_login)
    page.goto(f"{site}/approvals/")
    expect(page.locator("ul.queue li[data-approval]")).to_have_count(0)
    published = owner.client().post("/api/workflows", REVIEWED, format="json")
    assert published.status_code in (200, 201)
    # Started through the gateway, so its nodes run there.
    started = request("POST", f"{site}/api/workflows/{published.json()['data']['id']}/runs",
                      json.dumps({"input": {}}), {"Authorization": f"Bearer {owner.key}",
                                                  "Content-Type": "application/json"})
    assert started.status == 201
    expect(page.locator("ul.queue li[data-approval]")).to_have_count(1, timeout=30_000)


def test_the_metrics_chart_has_data_after_traffic_and_keeps_up(page, site, owner, owner_login, upstream_block,
                                                               screenshot):
    upstream_block(owner.organization, "chunks3", block_id="acme-charted")
    client = openai.OpenAI(base_url=f"{site}/v1", api_key=owner.key, max_retries=0)
    for _ in range(3):
        client.chat.completions.create(model="acme-charted", messages=[{"role": "user", "content": "hi"}])
    log_in(page, site, *owner_login)
    page.goto(f"{site}/usage/")
    chart = page.locator("svg.chart")
    # The gateway writes its counts within a second; the page polls its numbers every 5 s.
    expect(chart).to_have_attribute("data-requests", "3", timeout=15_000)
    expect(chart.locator("rect.bar")).not_to_have_count(0)
    expect(page.locator('tr[data-block="acme-charted"] [data-metric="requests"]')).to_have_text("3")
    screenshot(page, "chart")
    list(client.chat.completions.create(model="acme-charted", messages=[{"role": "user", "content": "again"}],
                                        stream=True))
    expect(chart).to_have_attribute("data-requests", "4", timeout=15_000)
    expect(page.locator('[data-metric="ttft"]')).not_to_have_text("– / –")
    page.goto(f"{site}/logs/")
    expect(page.locator("tbody tr[data-status]")).to_have_count(4, timeout=15_000)
    screenshot(page, "request-log")


def test_the_operators_pages_fit_a_390_px_screen(phone, site, owner, owner_login, screenshot):
    block = BlockFactory(organization=owner.organization, block_id="acme-wide-name-for-a-narrow-screen")
    # A route decision on the block's page: the longest row a block page has.
    RequestLogEntry.objects.create(
        organization=owner.organization, created_at=timezone.now(), model=block.block_id, block=block, status=200,
        latency_ms=12, route={"model": "auto", "mode": "planner", "policy": "cosine", "score": 0.8123,
                              "runnerUp": "acme-another-rather-long-block-name", "reason": "long " * 40,
                              "source": "planner", "defaultBlock": False})
    log_in(phone, site, *owner_login)
    for name, path in {"metrics": "/usage/", "request-log": "/logs/", "approvals": "/approvals/",
                       "workflows": "/workflows/", "block": f"/blocks/{block.pk}/"}.items():
        phone.goto(f"{site}{path}")
        expect(phone.locator("h1")).to_be_visible()
        width = phone.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"{name} scrolls sideways ({width} px)"
        screenshot(phone, name)
    expect(phone.locator("#route-decisions tr.route-decision")).to_have_count(1)
