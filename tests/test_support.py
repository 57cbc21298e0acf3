"""The test harness (tests/support) does what the suite relies on: the fake upstream answers, fails,
holds and cuts as its scenario says, and the live gateway serves the API with a key."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from inference.backends.base import BackendError, ChatRequest
from inference.backends.openai_compat import OpenAIBackend
from tests.support.fake_upstream import FakeUpstream, answer_text


@pytest.fixture
def upstream():
    server = FakeUpstream().start()
    yield server
    server.stop()


def hi() -> ChatRequest:
    return ChatRequest(messages=[{"role": "user", "content": "hi"}], model="m")


async def test_the_fake_upstream_answers_fails_and_cuts_as_told(upstream):
    healthy = OpenAIBackend.from_config({"base_url": upstream.base_url("chunks2")})
    answer = await healthy.complete(hi())
    assert answer["choices"][0]["message"]["content"] == answer_text(2) == "tok0 tok1"
    assert answer["usage"] == {"prompt_tokens": 8, "completion_tokens": 2, "total_tokens": 10}
    stream = healthy.stream_chat(hi())
    try:
        streamed = [d.content async for d in stream]
    finally:
        await stream.aclose()
    assert "".join(streamed) == answer_text(2) + " "

    for scenario, status in (("status500", 500), ("status429", 429)):
        backend = OpenAIBackend.from_config({"base_url": upstream.base_url(scenario)})
        with pytest.raises(BackendError) as failed:
            await backend.complete(hi())
        assert failed.value.upstream_status == status
        await backend.aclose()

    async with aiohttp.ClientSession() as session:
        async with session.post(upstream.base_url("status429") + "/chat/completions", json={"messages": []}) as busy:
            assert (busy.status, busy.headers["Retry-After"]) == (429, "0")
        async with session.post(upstream.base_url("cut2") + "/chat/completions",
                                json={"stream": True, "messages": []}) as response:
            with pytest.raises(aiohttp.ClientPayloadError):
                await response.read()
        with pytest.raises(aiohttp.ServerDisconnectedError):
            async with session.post(upstream.base_url("cut2") + "/chat/completions", json={"messages": []}):
                pass
    assert upstream.hits == {"chunks2": 2, "status500": 1, "status429": 2, "cut2": 2}
    await healthy.aclose()


async def test_a_flaky_upstream_fails_its_first_requests_then_answers(upstream):
    backend = OpenAIBackend.from_config({"base_url": upstream.base_url("flaky2-chunks3")})
    for _ in range(2):
        with pytest.raises(BackendError) as failed:
            await backend.complete(hi())
        assert failed.value.upstream_status == 500
    assert (await backend.complete(hi()))["choices"][0]["message"]["content"] == answer_text(3)
    await backend.aclose()


async def test_a_gated_upstream_holds_every_request_until_the_gate_opens(upstream):
    backend = OpenAIBackend.from_config({"base_url": upstream.base_url("gate-chunks1")})
    held = [asyncio.ensure_future(backend.complete(hi())) for _ in range(3)]
    await asyncio.sleep(0.3)
    assert not any(task.done() for task in held) and upstream.hits["gate-chunks1"] == 3
    upstream.open_gate()
    answers = await asyncio.wait_for(asyncio.gather(*held), 5)
    assert [a["choices"][0]["message"]["content"] for a in answers] == ["tok0"] * 3
    await backend.aclose()


async def test_stopping_the_fake_upstream_drops_a_hanging_request(upstream):
    async with aiohttp.ClientSession() as session:
        pending = asyncio.ensure_future(session.post(upstream.base_url("hang") + "/chat/completions",
                                                     json={"messages": []}))
        await asyncio.sleep(0.3)
        assert upstream.hits["hang"] == 1 and not pending.done()
        await asyncio.to_thread(upstream.stop)
        with pytest.raises(aiohttp.ClientError):
            await asyncio.wait_for(pending, 5)


@pytest.mark.django_db(transaction=True)
async def test_the_live_gateway_serves_the_api_with_a_key(live_gateway, owner):
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{live_gateway.url}/api/whoami", headers={"Authorization": f"Bearer {owner.key}"}) as r:
            assert r.status == 200
            assert (await r.json())["data"]["organization"] == "acme"
        async with session.get(f"{live_gateway.url}/api/whoami") as r:
            assert r.status in (401, 403)
