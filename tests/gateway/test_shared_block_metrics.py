"""Issue 8, privileges: a shared block's metrics show a caller only its own organization's traffic,
unless the caller owns the block."""

from __future__ import annotations

import time

import openai
import pytest

from inference import metrics
from inference.models import BlockMetricBucket
from registry.models import Block, BlockGrant, Membership, Organization
from tests.conftest import Party, _party
from tests.factories import BlockFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def shared(org) -> Block:
    return BlockFactory(organization=org, block_id="acme-shared", visibility=Block.PUBLIC)


@pytest.fixture
def third(db) -> Party:
    return _party("trent", Organization.objects.create(name="Initech", slug="initech"), Membership.OWNER)


def traffic(block: Block, organization: Organization, requests: int, tokens_out: int) -> None:
    for _ in range(requests):
        metrics.record(block_pk=block.pk, organization_pk=organization.pk, ok=True, latency_ms=20,
                       tokens_in=1, tokens_out=tokens_out)
    metrics.flush_now()


def seen(party: Party, block_id: str = "acme-shared") -> dict:
    reply = party.client().get(f"/api/blocks/{block_id}/metrics?window=5m")
    assert reply.status_code == 200, reply.json()
    return reply.json()["data"]


def test_a_shared_blocks_metrics_show_another_organization_only_its_own_traffic(owner, outsider, third, shared):
    traffic(shared, owner.organization, requests=3, tokens_out=10)
    traffic(shared, outsider.organization, requests=2, tokens_out=100)

    mine = seen(outsider, "acme/acme-shared")  # another organization names it by its qualified id
    assert (mine["scope"], mine["requests"], mine["tokensOut"]) == ("own", 2, 200)
    nothing = seen(third, "acme/acme-shared")
    assert (nothing["scope"], nothing["requests"], nothing["tokensOut"], nothing["latencyMs"]["p50"]) == \
        ("own", 0, 0, None)


def test_the_owning_organization_sees_every_callers_traffic(owner, member, outsider, shared):
    traffic(shared, owner.organization, requests=3, tokens_out=10)
    traffic(shared, outsider.organization, requests=2, tokens_out=100)
    for party in (owner, member):
        data = seen(party)
        assert (data["scope"], data["requests"], data["tokensOut"]) == ("all", 5, 230)


def test_a_granted_blocks_metrics_show_the_grantee_only_its_own_traffic(owner, outsider, org):
    granted = BlockFactory(organization=org, block_id="acme-granted")
    BlockGrant.objects.create(block=granted, organization=outsider.organization)
    traffic(granted, owner.organization, requests=4, tokens_out=1)
    assert seen(outsider, "acme/acme-granted")["requests"] == 0
    traffic(granted, outsider.organization, requests=1, tokens_out=1)
    assert seen(outsider, "acme/acme-granted")["requests"] == 1
    assert seen(owner, "acme-granted")["requests"] == 5


def test_a_private_blocks_metrics_stay_a_404_for_another_organization(outsider, org):
    BlockFactory(organization=org, block_id="acme-private")
    reply = outsider.client().get("/api/blocks/acme-private/metrics")
    assert reply.status_code == 404 and reply.json()["success"] is False


def test_an_estimate_of_a_shared_block_reports_only_the_callers_latency(owner, outsider, shared):
    traffic(shared, owner.organization, requests=3, tokens_out=1)
    body = {"search_query": "hello", "block_id": "acme-shared"}
    theirs = outsider.client().post("/discovery/estimate", {**body, "block_id": "acme/acme-shared"}, format="json")
    assert theirs.status_code == 200, theirs.json()
    assert theirs.json()["data"]["latency"]["requests"] == 0
    ours = owner.client().post("/discovery/estimate", body, format="json").json()["data"]
    assert ours["latency"]["requests"] == 3


@pytest.mark.django_db(transaction=True)
def test_the_live_gateway_records_the_calling_organization(live_gateway, owner, outsider, upstream_block):
    block = upstream_block(owner.organization, "chunks2", block_id="acme-live-shared", visibility=Block.PUBLIC)
    client = openai.OpenAI(base_url=live_gateway.v1, api_key=outsider.key, max_retries=0)
    client.chat.completions.create(model=block.qualified_id, messages=[{"role": "user", "content": "a"}])
    deadline = time.monotonic() + 5
    while not BlockMetricBucket.objects.filter(block=block).exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    bucket = BlockMetricBucket.objects.get(block=block)
    assert (bucket.organization_id, bucket.requests) == (outsider.organization.pk, 1)
    assert seen(owner, block.block_id)["requests"] == 1
    assert seen(outsider, block.qualified_id)["requests"] == 1
