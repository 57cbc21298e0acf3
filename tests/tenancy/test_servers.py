"""The HTTP test harness works on any branch: the fake upstream's faults and the live ASGI server."""

from __future__ import annotations

import aiohttp
import pytest

from inference.backends.base import BackendError, ChatRequest
from inference.backends.openai_compat import OpenAIBackend
from tests.tenancy.servers import FakeUpstream, LiveASGI


@pytest.fixture
def upstream():
    server = FakeUpstream().start()
    yield server
    server.stop()


async def test_the_fake_upstream_answers_fails_and_cuts_as_told(upstream):
    healthy = OpenAIBackend.from_config({"base_url": upstream.base_url("ok")})
    answer = await healthy.complete(ChatRequest(messages=[{"role": "user", "content": "hi"}], model="m"))
    assert answer["choices"][0]["message"]["content"] == "healthy answer"
    stream = healthy.stream_chat(ChatRequest(messages=[{"role": "user", "content": "hi"}], model="m"))
    try:
        streamed = [d.content async for d in stream]
    finally:
        await stream.aclose()
    assert "".join(streamed) == "healthy answer "

    for mode, status in (("fail500", 500), ("fail429", 429)):
        backend = OpenAIBackend.from_config({"base_url": upstream.base_url(mode)})
        with pytest.raises(BackendError) as failed:
            await backend.complete(ChatRequest(messages=[{"role": "user", "content": "hi"}], model="m"))
        assert failed.value.upstream_status == status
        await backend.aclose()

    async with aiohttp.ClientSession() as session, session.post(
            upstream.base_url("cut") + "/chat/completions", json={"stream": True, "messages": []}) as response:
        with pytest.raises(aiohttp.ClientPayloadError):
            await response.read()
    assert upstream.hits == {"ok": 2, "fail500": 1, "fail429": 1, "cut": 1}
    await healthy.aclose()


@pytest.mark.django_db(transaction=True)
async def test_the_live_asgi_server_serves_the_api_with_a_key(owner):
    server = LiveASGI().start()
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{server.url}/api/whoami", headers={"Authorization": f"Bearer {owner.key}"}) as r:
                assert r.status == 200
                assert (await r.json())["data"]["organization"] == "acme"
            async with session.get(f"{server.url}/api/whoami") as r:
                assert r.status in (401, 403)
    finally:
        server.stop()
