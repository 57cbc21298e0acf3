"""Quotas hold under concurrency: in one process, across processes (real Redis), and embedded."""

from __future__ import annotations

import asyncio
import multiprocessing

import pytest
from django.conf import settings

from registry.services import api_key_create
from registry.tenancy.models import Quota
from registry.tenancy.policy import GateError
from registry.tenancy.quota import (
    Limits,
    MemoryQuotaStore,
    QuotaExceeded,
    RedisQuotaStore,
    quota_store,
)
from tests.factories import BlockFactory
from tests.support.chat_requests import chat, principal_of
from tests.tenancy.conftest import admit_as
from tests.tenancy.crossprocess import reserve_from_another_process

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def block(org):
    return BlockFactory(organization=org, block_id="acme-llm")


@pytest.fixture
def principal(owner):
    return principal_of(owner)


def budget_counter_value() -> int:
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL)
    keys = list(client.scan_iter("sb:quota:*:budget:*"))
    assert len(keys) == 1
    return int(client.get(keys[0]))


async def _admit_many(principal, block, n: int, *, prompt_tokens: int = 10, max_tokens: int = 20):
    async def one():
        try:
            return await admit_as(principal=principal, request=chat(block.block_id, max_tokens=max_tokens),
                                  estimated_prompt_tokens=prompt_tokens)
        except GateError as exc:
            return exc

    return await asyncio.gather(*(one() for _ in range(n)))


async def test_exactly_50_of_200_concurrent_requests_fit_a_token_budget_for_50(org, principal, block):
    # Each request reserves 10 prompt + 20 max_tokens = 30 tokens; the budget holds 50 of them.
    await Quota.objects.acreate(organization=org, token_budget=50 * 30, budget_period=Quota.DAY)

    results = await _admit_many(principal, block, 200)

    admitted = [r for r in results if not isinstance(r, GateError)]
    refused = [r for r in results if isinstance(r, GateError)]
    assert len(admitted) == 50
    assert len(refused) == 150
    for error in refused:
        assert error.status == 429
        assert error.code == "insufficient_quota"
        assert error.rule == "token_budget"
        assert int(error.headers["Retry-After"]) > 0
        assert "token_budget is used up" in error.message
    assert budget_counter_value() == 1500

    # Real usage is lower than reserved: settling refunds the difference, never exceeds the budget.
    await asyncio.gather(*(a.settle(prompt_tokens=10, completion_tokens=5) for a in admitted))
    assert budget_counter_value() == 50 * 15


async def test_exactly_50_of_200_concurrent_requests_pass_a_limit_of_50_per_minute(org, principal, block):
    await Quota.objects.acreate(organization=org, requests_per_minute=50)

    results = await _admit_many(principal, block, 200)

    refused = [r for r in results if isinstance(r, GateError)]
    assert len(results) - len(refused) == 50
    assert {(e.status, e.code, e.rule) for e in refused} == {(429, "rate_limit_exceeded", "requests_per_minute")}
    assert all(1 <= int(e.headers["Retry-After"]) <= 60 for e in refused)


@pytest.mark.slow
def test_exactly_50_of_200_reservations_succeed_across_four_processes(db):
    ctx = multiprocessing.get_context("spawn")
    start, results = ctx.Event(), ctx.Queue()
    workers = [ctx.Process(target=reserve_from_another_process,
                           args=(settings.REDIS_URL, start, results, 50, 50 * 30, 30))
               for _ in range(4)]
    for worker in workers:
        worker.start()
    start.set()
    counts = [results.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(10)
    assert sum(counts) == 50, counts
    assert len([c for c in counts if c]) >= 1
    assert budget_counter_value() == 1500


async def test_the_embedded_store_gives_the_same_answer_under_concurrency():
    store = MemoryQuotaStore()
    limits = [Limits(scope="org:1", token_budget=50 * 30, budget_period="month")]

    async def one():
        try:
            return await store.reserve(limits, 30)
        except QuotaExceeded as exc:
            return exc

    results = await asyncio.gather(*(one() for _ in range(200)))
    refused = [r for r in results if isinstance(r, QuotaExceeded)]
    assert len(refused) == 150
    assert refused[0].code == "insufficient_quota"
    assert store.remaining(limits[0])["token_budget"]["used"] == 1500


@pytest.mark.parametrize("make_store", [MemoryQuotaStore, lambda: RedisQuotaStore(settings.REDIS_URL)])
async def test_settle_charges_the_difference_once_and_release_refunds_tokens_but_not_the_request(make_store):
    store = make_store()
    limits = Limits(scope="key:9", requests_per_minute=10, tokens_per_minute=1000, token_budget=1000)

    first = await store.reserve([limits], 100)
    await first.settle(prompt_tokens=60, completion_tokens=80)  # 140 used: 40 more than reserved
    await first.settle(prompt_tokens=999, completion_tokens=999)  # a second settle is ignored
    second = await store.reserve([limits], 100)
    await second.release()
    await second.release()

    left = store.remaining(limits)
    assert left["token_budget"]["used"] == 140
    assert left["tokens_per_minute"]["used"] == 140
    assert left["requests_per_minute"]["used"] == 2


async def test_a_keys_quota_and_its_organizations_quota_both_apply(org, owner, block):
    from registry.models import ApiKey

    key = await ApiKey.objects.select_related("organization").aget(organization=org, name="alice-key")
    await Quota.objects.acreate(organization=org, api_key=key, requests_per_minute=2)
    await Quota.objects.acreate(organization=org, requests_per_minute=3)
    from registry.principal import Principal

    limited = Principal(organization=org, api_key=key)
    other_key, _ = await asyncio.to_thread(api_key_create, organization=org, name="other")
    other = Principal(organization=org, api_key=other_key)

    for _ in range(2):
        await admit_as(principal=limited, request=chat(block.block_id), estimated_prompt_tokens=1)
    with pytest.raises(GateError) as refused:
        await admit_as(principal=limited, request=chat(block.block_id), estimated_prompt_tokens=1)
    assert "API key" in refused.value.message

    # Another key of the same organization only meets the organization's limit (3, 2 used).
    await admit_as(principal=other, request=chat(block.block_id), estimated_prompt_tokens=1)
    with pytest.raises(GateError) as org_refused:
        await admit_as(principal=other, request=chat(block.block_id), estimated_prompt_tokens=1)
    assert "organization" in org_refused.value.message


async def test_a_request_larger_than_the_tokens_per_minute_limit_is_refused_with_the_reason(org, principal, block):
    await Quota.objects.acreate(organization=org, tokens_per_minute=100)
    with pytest.raises(GateError) as refused:
        await admit_as(principal=principal, request=chat(block.block_id, max_tokens=500),
                       estimated_prompt_tokens=10)
    assert refused.value.status == 429
    assert refused.value.code == "rate_limit_exceeded"
    assert "510 tokens, more than the organization's tokens_per_minute limit of 100" in refused.value.message


async def test_a_refused_request_charges_nothing(org, principal, block):
    await Quota.objects.acreate(organization=org, requests_per_minute=100, token_budget=100)
    with pytest.raises(GateError):
        await admit_as(principal=principal, request=chat(block.block_id, max_tokens=200),
                       estimated_prompt_tokens=10)
    limits = Limits(scope=f"org:{org.pk}", requests_per_minute=100, token_budget=100)
    left = quota_store().remaining(limits)
    assert left["requests_per_minute"]["used"] == 0
    assert left["token_budget"]["used"] == 0


def test_without_redis_the_store_is_the_in_process_one(settings):
    from registry.tenancy import quota as quota_module

    assert isinstance(quota_store(), RedisQuotaStore)  # the suite itself runs against real Redis
    settings.REDIS_URL = ""
    quota_module._store = None
    assert isinstance(quota_store(), MemoryQuotaStore)


async def test_under_a_token_limit_an_uncapped_request_is_capped_at_its_reservation(org, principal, block):
    await Quota.objects.acreate(organization=org, token_budget=10_000, budget_period=Quota.DAY)
    request = chat(block.block_id, max_tokens=None)
    admission = await admit_as(principal=principal, request=request, estimated_prompt_tokens=10)
    assert request.max_tokens == 256
    assert budget_counter_value() == 10 + 256
    await admission.release()


async def test_without_a_token_limit_an_uncapped_request_stays_uncapped(org, principal, block):
    await Quota.objects.acreate(organization=org, requests_per_minute=100)
    request = chat(block.block_id, max_tokens=None)
    await admit_as(principal=principal, request=request, estimated_prompt_tokens=10)
    assert request.max_tokens is None
