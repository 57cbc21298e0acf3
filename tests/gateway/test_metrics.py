"""Per-block metrics: recorded in memory, flushed as upserts, summed over windows by the API."""

from __future__ import annotations

import time

import openai
import pytest

from inference import metrics
from inference.models import BlockMetricBucket
from registry.models import Block, BlockGrant
from tests.factories import BlockFactory
from tests.support.live_server import start_gateway


@pytest.fixture
def block(org) -> Block:
    return BlockFactory(organization=org, block_id="acme-metered")


def test_record_never_touches_the_database_until_a_flush(block, django_assert_num_queries):
    with django_assert_num_queries(0):
        metrics.record(block_pk=block.pk, organization_pk=block.organization_id, ok=True, latency_ms=12, ttft_ms=3, tokens_in=10, tokens_out=20)
    assert metrics.pending_count() == 1
    assert metrics.flush_now() == 1
    assert metrics.pending_count() == 0
    bucket = BlockMetricBucket.objects.get(block=block)
    assert (bucket.requests, bucket.errors, bucket.tokens_in, bucket.tokens_out) == (1, 0, 10, 20)
    assert bucket.latency_hist == {"15": 1} and bucket.ttft_hist == {"3": 1}


def test_flushes_add_to_the_same_minutes_bucket(block):
    metrics.record(block_pk=block.pk, organization_pk=block.organization_id, ok=True, latency_ms=12, tokens_in=1, tokens_out=2)
    metrics.flush_now()
    metrics.record(block_pk=block.pk, organization_pk=block.organization_id, ok=False, latency_ms=400, tokens_in=1, tokens_out=0)
    metrics.record(block_pk=block.pk, organization_pk=block.organization_id, ok=True, latency_ms=13, ttft_ms=5, tokens_in=1, tokens_out=2)
    metrics.flush_now()
    bucket = BlockMetricBucket.objects.get(block=block)
    assert (bucket.requests, bucket.errors, bucket.tokens_in, bucket.tokens_out) == (3, 1, 3, 4)
    assert bucket.latency_hist == {"15": 2, "500": 1}
    assert bucket.latency_ms_sum == pytest.approx(425)


def test_percentiles_interpolate_inside_the_histogram_buckets():
    hist = {"10": 50, "20": 40, "100": 10}
    assert metrics.percentile(hist, 50) == pytest.approx(10)
    assert metrics.percentile(hist, 90) == pytest.approx(20)
    assert 75 < metrics.percentile(hist, 99) <= 100
    assert metrics.percentile({}, 50) is None


def test_the_api_sums_a_window(owner, block):
    for latency in (10, 10, 10, 200):
        metrics.record(block_pk=block.pk, organization_pk=block.organization_id, ok=latency < 100, latency_ms=latency, ttft_ms=latency / 2,
                       tokens_in=5, tokens_out=7)
    metrics.flush_now()
    reply = owner.client().get("/api/blocks/acme-metered/metrics?window=5m")
    assert reply.status_code == 200
    data = reply.json()["data"]
    assert (data["requests"], data["errors"], data["errorRate"]) == (4, 1, 0.25)
    assert (data["tokensIn"], data["tokensOut"]) == (20, 28)
    assert data["latencyMs"]["p50"] <= 10 < data["latencyMs"]["p99"] <= 200
    assert data["ttftMs"]["p50"] <= 5
    assert data["window"] == "5m"


def test_the_api_leaves_out_minutes_before_the_window(owner, block):
    from datetime import timedelta

    from django.utils import timezone

    old = (timezone.now() - timedelta(minutes=30)).replace(second=0, microsecond=0)
    BlockMetricBucket.objects.create(block=block, organization=block.organization, minute=old, requests=9, errors=9)
    assert owner.client().get("/api/blocks/acme-metered/metrics?window=5m").json()["data"]["requests"] == 0
    assert owner.client().get("/api/blocks/acme-metered/metrics?window=1h").json()["data"]["requests"] == 9


def test_the_api_rejects_an_unknown_window(owner, block):
    reply = owner.client().get("/api/blocks/acme-metered/metrics?window=30d")
    assert reply.status_code == 400
    assert reply.json()["success"] is False and "window" in reply.json()["message"]


def test_the_api_hides_another_orgs_private_block(outsider, block):
    reply = outsider.client().get("/api/blocks/acme-metered/metrics")
    assert reply.status_code == 404 and reply.json()["success"] is False
    assert outsider.client().get("/api/blocks/no-such-block/metrics").status_code == 404


def test_the_api_shows_a_granted_block_to_the_grantee(outsider, block):
    BlockGrant.objects.create(block=block, organization=outsider.organization)
    # Another organization's block, by its qualified id only.
    assert outsider.client().get("/api/blocks/acme/acme-metered/metrics").status_code == 200
    assert outsider.client().get("/api/blocks/acme-metered/metrics").status_code == 404


def test_the_api_needs_credentials(anon, block):
    assert anon.get("/api/blocks/acme-metered/metrics").status_code in (401, 403)


@pytest.mark.django_db(transaction=True)
def test_the_live_gateway_records_requests_within_seconds(live_gateway, owner, upstream_block):
    block = upstream_block(owner.organization, "chunks4", block_id="acme-live-metrics")
    client = openai.OpenAI(base_url=live_gateway.v1, api_key=owner.key, max_retries=0)
    client.chat.completions.create(model=block.block_id, messages=[{"role": "user", "content": "a"}])
    list(client.chat.completions.create(model=block.block_id, messages=[{"role": "user", "content": "b"}],
                                        stream=True))
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        bucket = BlockMetricBucket.objects.filter(block=block).first()
        if bucket and bucket.requests == 2:
            break
        time.sleep(0.2)
    assert bucket is not None and bucket.requests == 2 and bucket.errors == 0
    assert bucket.tokens_out == 8 and bucket.ttft_count == 1


@pytest.mark.django_db(transaction=True)
def test_a_gateway_shutting_down_flushes_what_it_has_not_written_yet(live_gateway, owner, upstream_block):
    block = upstream_block(owner.organization, "chunks2", block_id="acme-shutdown-metrics")
    gateway = start_gateway()
    try:
        client = openai.OpenAI(base_url=gateway.v1, api_key=owner.key, max_retries=0)
        client.chat.completions.create(model=block.block_id, messages=[{"role": "user", "content": "a"}])
    finally:
        gateway.stop(grace_s=10)  # Well inside the flusher's 1 s period.
    assert metrics.FLUSH_INTERVAL_S >= 1
    bucket = BlockMetricBucket.objects.get(block=block)
    assert bucket.requests == 1 and bucket.tokens_out == 2
