"""Enqueueing from the gateway's loop: the task message kombu would have sent, one pipelined write
per burst, GPU-queue requests sharing tasks. (A shared task re-delivered after a worker is killed:
test_queued.py.)"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid

import pytest
import redis
from django.conf import settings

from inference.backends.factory import backend_for_block
from inference.backends.queued import enqueue, streams
from inference.workers.tasks import run_requests
from tests.support.live_server import start_celery_worker, start_fake_engine
from tests.support.ports import free_port
from tests.support.queued_requests import collect, engine_chat, expected, queued_block

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def broker():
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    queue = f"inference.gpu.test-{uuid.uuid4().hex[:8]}"
    yield client, queue
    client.delete(queue)


def decoded(raw: bytes) -> dict:
    message = json.loads(raw)
    message["body"] = json.loads(base64.b64decode(message["body"]))
    return message


def test_the_envelope_is_the_message_apply_async_would_have_sent(broker):
    client, queue = broker
    run_requests.apply_async(args=[["r1", "r2"]], queue=queue)
    theirs = decoded(client.rpop(queue))
    ours = decoded(enqueue.task_envelope(enqueue.RUN_REQUESTS, [["r1", "r2"]], queue))

    assert ours.keys() == theirs.keys()
    assert ours["body"] == theirs["body"] == [[["r1", "r2"]], {}, {"callbacks": None, "errbacks": None,
                                                                  "chain": None, "chord": None}]
    assert ours["headers"].keys() == theirs["headers"].keys()
    for same in ("lang", "task", "timelimit", "ignore_result", "retries", "argsrepr", "kwargsrepr"):
        assert ours["headers"][same] == theirs["headers"][same], same
    assert ours["properties"].keys() == theirs["properties"].keys()
    for same in ("delivery_mode", "delivery_info", "priority", "body_encoding"):
        assert ours["properties"][same] == theirs["properties"][same], same
    assert ours["content-type"] == theirs["content-type"] == "application/json"
    assert ours["headers"]["id"] == ours["properties"]["correlation_id"] != theirs["headers"]["id"]


async def test_a_burst_for_a_gpu_queue_is_one_write_of_a_few_shared_tasks(broker, settings):
    client, queue = broker
    settings.WORKER_DISPATCH_BATCH = 16
    ids = [uuid.uuid4().hex for _ in range(40)]
    await asyncio.gather(*(enqueue.request_enqueue(request_id=i, record={"n": n}, queue=queue)
                           for n, i in enumerate(ids)))

    messages = [decoded(raw) for raw in reversed(client.lrange(queue, 0, -1))]
    batches = [m["body"][0][0] for m in messages]
    assert [len(b) for b in batches] == [16, 16, 8]
    assert [i for b in batches for i in b] == ids
    assert all(m["headers"]["task"] == "inference.run_requests" for m in messages)
    assert [json.loads(client.get(streams.record_key(i)))["n"] for i in ids] == list(range(40))
    client.delete(*(streams.record_key(i) for i in ids))


async def test_the_cpu_queue_gets_a_task_per_request(broker, settings):
    client, _ = broker
    queue = "inference.cpu"
    client.delete(queue)
    ids = [uuid.uuid4().hex for _ in range(5)]
    try:
        await asyncio.gather(*(enqueue.request_enqueue(request_id=i, record={}, queue=queue) for i in ids))
        batches = [decoded(raw)["body"][0][0] for raw in reversed(client.lrange(queue, 0, -1))]
        assert batches == [[i] for i in ids]
    finally:
        client.delete(queue, *(streams.record_key(i) for i in ids))


async def test_a_failed_write_reaches_every_request_of_the_burst(settings):
    from redis.exceptions import RedisError

    settings.REDIS_URL = settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{free_port()}/0"
    outcomes = await asyncio.gather(*(enqueue.request_enqueue(request_id=str(n), record={}, queue="inference.gpu.x")
                                      for n in range(3)), return_exceptions=True)
    assert all(isinstance(o, RedisError) for o in outcomes), outcomes


@pytest.mark.slow
async def test_64_requests_sharing_gpu_queue_tasks_run_at_once(org, worker_env, tmp_path):
    queue = f"inference.gpu.burst-{uuid.uuid4().hex[:6]}"
    engine = start_fake_engine(token_delay_ms=25, tokens=40)
    worker = start_celery_worker(worker_env, tmp_path, queue=queue)
    try:
        block = await asyncio.to_thread(queued_block, engine.url, org, queue=queue)
        backend = backend_for_block(block)
        results = await asyncio.gather(*(collect(backend, engine_chat(org, max_tokens=40)) for _ in range(64)))
        assert all(text == expected(0, 40) for text, _ in results)
        assert engine.stats()["max_active"] >= 60
    finally:
        worker.stop()
        engine.stop()
