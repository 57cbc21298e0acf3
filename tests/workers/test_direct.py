"""Direct path: backend_type `sglang` streams from the least loaded ready engine with a fresh heartbeat."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from django.utils import timezone

from inference.backends.base import BackendError, ChatRequest
from inference.backends.engines import forget_cache, inflight
from inference.backends.factory import backend_for_block
from inference.backends.openai_compat import close_sessions
from inference.backends.sglang import SGLangBackend
from inference.models import Engine
from tests.factories import BlockFactory
from tests.support.live_server import start_fake_engine

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture
def two_engines():
    engines = [start_fake_engine(token_delay_ms=2, tokens=8) for _ in range(2)]
    forget_cache()
    yield engines
    for engine in engines:
        engine.stop()
    forget_cache()
    inflight.clear()


def register(block, url: str, *, node: str, state: str = Engine.READY, age_s: float = 0.0, load: float = 0.0):
    return Engine.objects.create(block=block, node=node, endpoint=url, state=state, capacity=64, load=load,
                                 last_heartbeat=timezone.now() - timedelta(seconds=age_s))


def request() -> ChatRequest:
    return ChatRequest(messages=[{"role": "user", "content": "hi"}], model="x", max_tokens=8)


async def text(backend) -> str:
    try:
        return "".join([d.content async for d in backend.stream_chat(request())])
    finally:
        await close_sessions()


def test_it_streams_from_the_ready_engine_and_never_from_a_stale_one(org, two_engines, settings):
    settings.ENGINE_HEARTBEAT_STALE_S = 3.0
    block = BlockFactory(organization=org, backend_type="sglang", backend_config={})
    fresh, stale = two_engines
    register(block, fresh.url, node="a")
    register(block, stale.url, node="b", age_s=10)
    backend = backend_for_block(block)
    assert isinstance(backend, SGLangBackend)
    for _ in range(6):
        assert asyncio.run(text(backend)) == "".join(f"tok{i} " for i in range(8))
    assert fresh.stats()["completed"] == 6
    assert stale.stats()["requests"] == 0


def test_it_prefers_the_least_loaded_engine_counting_its_own_in_flight_requests(org, two_engines):
    block = BlockFactory(organization=org, backend_type="sglang", backend_config={})
    busy_engine, idle_engine = two_engines
    busy = register(block, busy_engine.url, node="a", load=40)
    register(block, idle_engine.url, node="b", load=10)
    backend = backend_for_block(block)
    asyncio.run(text(backend))
    assert idle_engine.stats()["completed"] == 1 and busy_engine.stats()["requests"] == 0
    # Requests this process already has in flight count too: now the other engine is less loaded.
    idle_id = Engine.objects.get(node="b").pk
    inflight[idle_id] += 40
    asyncio.run(text(backend))
    assert busy_engine.stats()["completed"] == 1
    assert inflight[busy.pk] == 0  # released when the stream ended


def test_it_answers_503_when_no_engine_is_ready_or_fresh(org, two_engines):
    block = BlockFactory(organization=org, backend_type="sglang", backend_config={})
    register(block, two_engines[0].url, node="a", state=Engine.STARTING)
    register(block, two_engines[1].url, node="b", state=Engine.DRAINING)
    with pytest.raises(BackendError) as caught:
        asyncio.run(text(backend_for_block(block)))
    assert caught.value.status == 503 and caught.value.code == "engine_unavailable"
