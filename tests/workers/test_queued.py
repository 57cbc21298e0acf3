"""Queued path end to end: gateway-side backend -> Celery task on a real worker -> Redis Stream."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis
from django.conf import settings

from inference.backends.base import BackendError
from inference.backends.factory import backend_for_block
from inference.backends.queued import streams
from inference.backends.queued.backend import QueuedBackend
from tests.factories import BlockFactory
from tests.support.live_server import start_celery_worker, start_fake_engine, wait_for
from tests.support.ports import free_port
from tests.support.queued_requests import collect, engine_chat, expected, queued_block

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def test_a_queued_block_gets_the_queued_backend(org):
    block = queued_block("http://127.0.0.1:1", org)
    assert isinstance(backend_for_block(block), QueuedBackend)


async def test_a_queued_request_streams_every_token_in_batched_entries(org, fake_engine, cpu_worker):
    block = await asyncio.to_thread(queued_block, fake_engine.url, org)
    backend = backend_for_block(block)
    text, deltas = await collect(backend, engine_chat(org, max_tokens=40))
    assert text == expected(0, 40)
    assert deltas[-1].finish_reason == "length"
    assert deltas[-1].usage["completion_tokens"] == 40
    # 40 tokens at 5 ms each over ~200 ms: ~20 ms batches mean far fewer entries than tokens.
    event_ids = [d.event_id for d in deltas if d.content]
    assert 3 <= len(set(event_ids)) < 25
    request_id = event_ids[0].split(":")[0]
    entries = redis.Redis.from_url(settings.REDIS_URL).xrange(streams.stream_key(request_id))
    assert len(entries) == len({d.event_id for d in deltas})
    assert redis.Redis.from_url(settings.REDIS_URL).ttl(streams.stream_key(request_id)) > 0


async def test_64_concurrent_queued_requests_finish_in_about_the_time_of_one(org, worker_env, tmp_path):
    engine = start_fake_engine(token_delay_ms=25, tokens=40)
    worker = start_celery_worker(worker_env, tmp_path, queue="inference.cpu")
    try:
        block = await asyncio.to_thread(queued_block, engine.url, org)
        backend = backend_for_block(block)
        await collect(backend, engine_chat(org, max_tokens=2))  # connections and caches warm
        started = time.monotonic()
        text, _ = await collect(backend, engine_chat(org, max_tokens=40))
        single = time.monotonic() - started
        assert text == expected(0, 40)

        started = time.monotonic()
        results = await asyncio.gather(*(collect(backend, engine_chat(org, max_tokens=40)) for _ in range(64)))
        many = time.monotonic() - started
        assert all(text == expected(0, 40) for text, _ in results)
        # Served one by one this would take 64x; the engine must have seen them together.
        assert many < 3 * single, (many, single)
        assert engine.stats()["max_active"] >= 32
    finally:
        worker.stop()
        engine.stop()


async def test_cancelling_a_queued_request_aborts_it_on_the_engine(org, cpu_worker):
    engine = start_fake_engine(token_delay_ms=20, tokens=500)
    try:
        block = await asyncio.to_thread(queued_block, engine.url, org)
        backend = backend_for_block(block)
        request = engine_chat(org, max_tokens=500)
        request_id = await backend.submit(request)
        seen = []
        async for delta in streams.stream_read(request_id, timeout_s=30):
            seen.append(delta)
            if len(seen) == 3:
                await streams.request_cancel(request_id)
        assert seen[-1].finish_reason == "cancelled"
        assert len("".join(d.content for d in seen).split()) < 100
        wait_for(lambda: engine.stats()["aborted"] == 1, 5, what="engine abort")
        assert engine.stats()["completed"] == 0
    finally:
        engine.stop()


async def test_a_client_going_away_cancels_the_engine_request_after_the_grace_period(org, cpu_worker, settings):
    settings.QUEUED_RESUME_GRACE_S = 0.0
    engine = start_fake_engine(token_delay_ms=20, tokens=500)
    try:
        block = await asyncio.to_thread(queued_block, engine.url, org)
        stream = backend_for_block(block).stream_chat(engine_chat(org, max_tokens=500))
        async for delta in stream:
            if delta.content:
                break
        await stream.aclose()
        wait_for(lambda: engine.stats()["aborted"] == 1, 5, what="engine abort after client left")
    finally:
        engine.stop()


async def test_an_engine_error_reaches_the_reader_with_its_message(org, cpu_worker):
    engine = start_fake_engine(fail_mode="http500")
    try:
        block = await asyncio.to_thread(queued_block, engine.url, org)
        with pytest.raises(BackendError) as caught:
            await collect(backend_for_block(block), engine_chat(org))
        assert "engine exploded" in caught.value.message
        assert caught.value.status == 502
        assert caught.value.upstream_status == 500  # what a retry_on policy is written against
    finally:
        engine.stop()


async def test_a_request_nobody_serves_times_out_with_504(org, settings):
    block = await asyncio.to_thread(queued_block, "http://127.0.0.1:1", org, queue="inference.nobody")
    request = engine_chat(org)
    request.timeout_s = 1.5
    with pytest.raises(BackendError) as caught:
        await collect(backend_for_block(block), request)
    assert caught.value.status == 504


@pytest.mark.parametrize(("queue", "together"), [("inference.cpu", 1), ("inference.gpu.kill-test", 3)],
                         ids=["one-request-per-task", "three-requests-sharing-a-task"])
async def test_a_worker_killed_mid_task_is_redelivered_and_every_stream_completes_without_repeats(
        org, worker_env, tmp_path, queue, together):
    env = {"CELERY_VISIBILITY_TIMEOUT": "3", "WORKER_LEASE_S": "2"}
    redis.Redis.from_url(settings.REDIS_URL).delete(queue)
    engine = start_fake_engine(token_delay_ms=20, tokens=150)
    first = start_celery_worker(worker_env, tmp_path, queue=queue, extra_env=env)
    second = None
    try:
        block = await asyncio.to_thread(queued_block, engine.url, org, queue=queue)
        backend = backend_for_block(block)
        ids = await asyncio.gather(*(backend.submit(engine_chat(org, max_tokens=150)) for _ in range(together)))
        readers = [streams.stream_read(i, timeout_s=60) for i in ids]
        seen: list[list] = [[] for _ in ids]
        for reader, deltas in zip(readers, seen, strict=True):
            async for delta in reader:
                deltas.append(delta)
                if len("".join(d.content for d in deltas).split()) >= 20:
                    break
        first.kill()
        first.process.wait(5)
        second = start_celery_worker(worker_env, tmp_path, queue=queue, extra_env=env)
        for reader, deltas in zip(readers, seen, strict=True):
            async for delta in reader:
                deltas.append(delta)
        assert ["".join(d.content for d in deltas) for deltas in seen] == [expected(0, 150)] * together
        assert all(deltas[-1].finish_reason == "length" for deltas in seen)
        # The engine saw each request twice: cut by the kill, then continued by the re-delivered task.
        assert engine.stats()["requests"] == 2 * together
    finally:
        first.stop()
        if second:
            second.stop()
        engine.stop()


async def test_a_request_answers_503_when_the_queue_is_unreachable(org, settings):
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    block = await asyncio.to_thread(queued_block, "http://127.0.0.1:1", org)
    with pytest.raises(BackendError) as caught:
        await collect(backend_for_block(block), engine_chat(org))
    assert caught.value.status == 503 and caught.value.code == "queue_unavailable"


RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672//"

# Runs in its own process: a gateway-side publisher whose Celery broker is RabbitMQ.
PUBLISH_OVER_RABBITMQ = """
import asyncio, sys
import django
django.setup()
from inference.backends.base import ChatRequest
from inference.backends.factory import backend_for_block
from registry.models import Block

async def main(block):
    backend = backend_for_block(block)
    request = ChatRequest(messages=[{"role": "user", "content": "hello"}], model="m", max_tokens=8,
                          organization_id=int(sys.argv[2]))
    print("TEXT=" + "".join([d.content async for d in backend.stream_chat(request)]))

asyncio.run(main(Block.objects.get(block_id=sys.argv[1])))
"""


def test_rabbitmq_works_as_the_celery_broker(org, fake_engine, worker_env, tmp_path):
    import subprocess
    import sys

    env = {**worker_env, "CELERY_BROKER_URL": RABBITMQ_URL, "DJANGO_SETTINGS_MODULE": "webapp.settings"}
    worker = start_celery_worker(env, tmp_path, queue="inference.cpu")
    try:
        assert "amqp://guest:**@127.0.0.1:5672//" in worker.output()  # the banner names the broker it uses
        block = queued_block(fake_engine.url, org)
        result = subprocess.run([sys.executable, "-c", PUBLISH_OVER_RABBITMQ, block.block_id, str(org.pk)],
                                env=env, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr[-3000:]
        assert f"TEXT={expected(0, 8)}" in result.stdout
    finally:
        worker.stop()


async def test_a_queued_request_runs_its_own_organizations_block_when_another_has_the_same_id(
        org, other_org, fake_engine, cpu_worker):
    # Ids are unique per organization only: the worker loads the queued block by pk, never by id.
    def blocks():
        config = {"dispatch": "queued", "queue": "inference.cpu"}
        theirs = BlockFactory(organization=other_org, block_id="same", backend_type="openai",
                              backend_config={"base_url": "http://127.0.0.1:1/v1", **config})
        mine = BlockFactory(organization=org, block_id="same", backend_type="openai",
                            backend_config={"base_url": f"{fake_engine.url}/v1", **config})
        return mine, theirs

    mine, theirs = await asyncio.to_thread(blocks)
    assert backend_for_block(mine) is not backend_for_block(theirs)
    text, _ = await collect(backend_for_block(mine), engine_chat(org, max_tokens=4))
    assert text == expected(0, 4)
    with pytest.raises(BackendError):
        await collect(backend_for_block(theirs), engine_chat(other_org, max_tokens=4))
