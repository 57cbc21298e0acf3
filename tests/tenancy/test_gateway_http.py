"""Quotas, constraints, retries and fallbacks through the real HTTP path: /v1/chat/completions.

The live gateway executes the retries/fallbacks loop with the Policy that
registry.tenancy.admission.admit returns; the fake upstream (tests/support/fake_upstream.py) injects
the faults. Each test has a fake upstream of its own, so its request counts start at zero.
"""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import pytest
from asgiref.sync import sync_to_async

from registry.tenancy.models import PolicyRule, Quota
from tests.factories import BlockFactory
from tests.support.fake_upstream import FakeUpstream, answer_text

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

# The upstream's answer in these tests: two tokens, 8 prompt + 2 completion tokens of usage.
OK = "chunks2"
ANSWER = answer_text(2)
USAGE_TOTAL = 8 + 2


@pytest.fixture
def upstream():
    server = FakeUpstream().start()
    yield server
    server.stop()


def openai_block(org, block_id: str, upstream: FakeUpstream, scenario: str):
    return BlockFactory(organization=org, block_id=block_id, backend_type="openai",
                        backend_config={"base_url": upstream.base_url(scenario), "api_key": "sk-fake"})


async def post_chat(session, live_gateway, key: str, body: dict) -> tuple[int, dict, dict | str]:
    async with session.post(f"{live_gateway.url}/v1/chat/completions", json=body,
                            headers={"Authorization": f"Bearer {key}"}) as response:
        text = await response.text()
        try:
            payload = json.loads(text)
        except ValueError:
            payload = text
        return response.status, dict(response.headers), payload


def assert_openai_error(payload, code: str) -> None:
    assert set(payload["error"]) >= {"message", "type", "param", "code"}
    assert payload["error"]["code"] == code


async def wait_for(predicate, within_s: float = 5.0):
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        value = await sync_to_async(predicate)()
        if value:
            return value
        await asyncio.sleep(0.1)
    return await sync_to_async(predicate)()


async def test_200_concurrent_http_requests_against_a_budget_for_50(org, owner, upstream, live_gateway):
    # The upstream holds every answer until all 200 are decided, so none settles early.
    block = await sync_to_async(openai_block)(org, "acme-gate", upstream, f"gate-{OK}")
    # Each request reserves prompt (a few tokens, under 64) + max_tokens 100000: 50 fit, 51 never do.
    await Quota.objects.acreate(organization=org, token_budget=50 * 100_000 + 50 * 64, budget_period="day")
    body = {"model": block.block_id, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 100_000}

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200)) as session:
        tasks = [asyncio.ensure_future(post_chat(session, live_gateway, owner.key, body)) for _ in range(200)]

        async def first_150_answers():
            for answered, next_done in enumerate(asyncio.as_completed(tasks), start=1):
                await next_done
                if answered == 150:
                    return

        await asyncio.wait_for(first_150_answers(), 30)
        await asyncio.sleep(0.2)  # a 51st admission, if there were one, would be let through now
        upstream.open_gate()
        results = await asyncio.gather(*tasks)

    ok = [r for r in results if r[0] == 200]
    refused = [r for r in results if r[0] == 429]
    assert (len(ok), len(refused)) == (50, 150), sorted({r[0] for r in results})
    for _, headers, payload in refused:
        assert int(headers["Retry-After"]) > 0
        assert_openai_error(payload, "insufficient_quota")
    assert all(r[2]["choices"][0]["message"]["content"] == ANSWER for r in ok)
    assert upstream.hits[f"gate-{OK}"] == 50

    # Settled with real usage (USAGE_TOTAL tokens each): what is recorded never exceeds the budget.
    def used():
        from registry.principal import Principal
        from registry.tenancy.selectors import remaining_quota

        state = remaining_quota(Principal(organization=org))["organization"]["token_budget"]
        return state["used"] if state["used"] == 50 * USAGE_TOTAL else None

    assert await wait_for(used) == 50 * USAGE_TOTAL


async def failing_primary_with_fallback(org, owner, upstream, live_gateway):
    primary = await sync_to_async(openai_block)(org, "acme-broken", upstream, "status500")
    spare = await sync_to_async(openai_block)(org, "acme-spare", upstream, OK)
    await PolicyRule.objects.acreate(organization=org, block=primary, retries=1, backoff_s=0,
                                     retry_on=[500], fallbacks=[spare.block_id])
    async with aiohttp.ClientSession() as session:
        status, _, payload = await post_chat(session, live_gateway, owner.key, {
            "model": primary.block_id, "messages": [{"role": "user", "content": "hi"}]})
    assert status == 200, payload
    assert payload["choices"][0]["message"]["content"] == ANSWER
    assert (upstream.hits["status500"], upstream.hits[OK]) == (2, 1)  # one try + one retry, then the fallback
    return primary, spare


async def test_a_failing_primary_with_a_healthy_fallback_gives_a_normal_answer(org, owner, upstream, live_gateway):
    await failing_primary_with_fallback(org, owner, upstream, live_gateway)


async def test_the_metrics_show_both_the_failed_primary_and_the_fallback(org, owner, upstream, live_gateway):
    from inference.models import BlockMetricBucket

    primary, spare = await failing_primary_with_fallback(org, owner, upstream, live_gateway)

    def both_recorded():
        failed = BlockMetricBucket.objects.filter(block=primary, errors__gte=1).exists()
        served = BlockMetricBucket.objects.filter(block=spare, requests__gte=1).exists()
        return failed and served

    assert await wait_for(both_recorded)


@pytest.mark.parametrize("mode, rule", [
    ("status429", {"retries": 2, "backoff_s": 0, "retry_on": [429]}),
    ("hang", {"timeout_s": 0.5, "retries": 0}),
])
async def test_a_rate_limited_or_hanging_primary_falls_back(org, owner, upstream, live_gateway, mode, rule):
    primary = await sync_to_async(openai_block)(org, f"acme-{mode}", upstream, mode)
    spare = await sync_to_async(openai_block)(org, "acme-spare", upstream, OK)
    await PolicyRule.objects.acreate(organization=org, block=primary, fallbacks=[spare.block_id], **rule)
    started = time.monotonic()
    async with aiohttp.ClientSession() as session:
        status, _, payload = await post_chat(session, live_gateway, owner.key, {
            "model": primary.block_id, "messages": [{"role": "user", "content": "hi"}]})
    assert status == 200, payload
    assert payload["choices"][0]["message"]["content"] == ANSWER
    assert upstream.hits[mode] == rule["retries"] + 1
    assert time.monotonic() - started < 5


async def test_a_stream_cut_midway_never_looks_like_a_complete_answer(org, owner, upstream, live_gateway):
    # Cut after the role chunk and the first token: part of the answer has been sent.
    primary = await sync_to_async(openai_block)(org, "acme-cut", upstream, f"cut2-{OK}")
    spare = await sync_to_async(openai_block)(org, "acme-spare", upstream, OK)
    await PolicyRule.objects.acreate(organization=org, block=primary, fallbacks=[spare.block_id])
    async with aiohttp.ClientSession() as session, session.post(
            f"{live_gateway.url}/v1/chat/completions", headers={"Authorization": f"Bearer {owner.key}"},
            json={"model": primary.block_id, "stream": True,
                  "messages": [{"role": "user", "content": "hi"}]}) as response:
        text = await response.text()
    assert upstream.hits[f"cut2-{OK}"] == 1
    events = [line[6:] for line in text.splitlines() if line.startswith("data: ")]
    content = "".join(json.loads(e)["choices"][0]["delta"].get("content") or ""
                      for e in events if e != "[DONE]" and "choices" in json.loads(e))
    errored = any("error" in json.loads(e) for e in events if e != "[DONE]")
    # Either the fallback answered in full (cut before anything reached the client), or the
    # client is told about the failure: a truncated answer must not end like a finished one.
    assert content.endswith(ANSWER + " ") or errored, text


async def test_an_unhandled_upstream_failure_keeps_the_upstream_message(org, owner, upstream, live_gateway):
    primary = await sync_to_async(openai_block)(org, "acme-broken", upstream, "status500")
    async with aiohttp.ClientSession() as session:
        status, _, payload = await post_chat(session, live_gateway, owner.key, {
            "model": primary.block_id, "messages": [{"role": "user", "content": "hi"}]})
    assert status == 502
    assert "injected failure from the fake upstream" in payload["error"]["message"]


async def test_constraints_and_visibility_answer_openai_errors_over_http(org, other_org, owner, outsider, upstream,
                                                                        live_gateway):
    block = await sync_to_async(openai_block)(org, "acme-ok", upstream, OK)
    await PolicyRule.objects.acreate(organization=org, max_output_tokens=10)
    async with aiohttp.ClientSession() as session:
        status, _, payload = await post_chat(session, live_gateway, owner.key, {
            "model": block.block_id, "max_tokens": 11, "messages": [{"role": "user", "content": "hi"}]})
        assert status == 400
        assert_openai_error(payload, "policy_violation")
        assert payload["error"]["message"] == "max_output_tokens 10 exceeded: max_tokens is 11"

        foreign = await post_chat(session, live_gateway, outsider.key, {
            "model": block.block_id, "messages": [{"role": "user", "content": "hi"}]})
        missing = await post_chat(session, live_gateway, outsider.key, {
            "model": "acme-nothing", "messages": [{"role": "user", "content": "hi"}]})
        assert foreign[0] == missing[0] == 404
        assert foreign[2]["error"]["message"].replace("acme-ok", "X") == \
            missing[2]["error"]["message"].replace("acme-nothing", "X")
    assert upstream.hits[OK] == 0
