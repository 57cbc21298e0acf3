"""`manage.py inference_worker --gpu 0 --model <block>`: engine supervision with the fake engine as the command."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
import time

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from inference.backends.base import ChatRequest
from inference.backends.engines import _ready_engines, engine_list_for, forget_cache, pick
from inference.backends.factory import backend_for_block
from inference.backends.openai_compat import close_sessions
from inference.models import Engine
from inference.workers import services
from tests.factories import BlockFactory
from tests.support.live_server import FAKE_ENGINE_CMD, ROOT, Worker, wait_for
from tests.support.plain_http import get_json

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

ENGINE_CMD = f"{FAKE_ENGINE_CMD} --token-delay-ms 5 --tokens 12"


def sglang_block(org, **config):
    return BlockFactory(organization=org, block_id="llama-fake", backend_type="sglang",
                        backend_config={"engine": {"model_path": "/models/llama", "tp": 1,
                                                   "mem_fraction_static": 0.8, "context_length": 4096,
                                                   "capacity": 32}, **config})


def gpu_worker(env, tmp_path, *, node: str, model: str, engine_cmd: str = ENGINE_CMD) -> Worker:
    argv = [sys.executable, str(ROOT / "manage.py"), "inference_worker", "--gpu", "0", "--model", model,
            "--node", node, "--engine-port", "0", "--engine-cmd", engine_cmd, "--concurrency", "16"]
    return Worker(argv, {**env, "ENGINE_HEARTBEAT_S": "0.3"}, tmp_path / f"{node}.log")


def engine_row(**filters) -> Engine | None:
    return Engine.objects.filter(**filters).first()


def test_the_command_refuses_a_gpu_worker_without_a_model_or_an_unknown_block(db):
    with pytest.raises(CommandError, match="--model"):
        call_command("inference_worker", "--gpu", "0")
    with pytest.raises(CommandError, match="--gpu N"):
        call_command("inference_worker")
    with pytest.raises(CommandError, match="no block"):
        call_command("inference_worker", "--gpu", "0", "--model", "nope")


def test_a_gpu_worker_supervises_its_engine_restarts_it_and_serves_queued_and_direct_requests(
        org, worker_env, tmp_path):
    sglang_block(org, dispatch="queued")
    worker = gpu_worker(worker_env, tmp_path, node="node-a", model="llama-fake")
    try:
        worker.wait_ready()
        engine = wait_for(lambda: engine_row(node="node-a", state=Engine.READY), 30, what="engine ready")
        assert engine.block.block_id == "llama-fake"
        assert engine.gpu == "0" and engine.capacity == 32 and engine.restarts == 0
        # The supervisor launched the configured command with the block's engine settings.
        info = get_json(f"{engine.endpoint}/get_model_info")
        assert info["model_path"] == "llama-fake"  # --served-model-name <block_id>
        cmdline = open(f"/proc/{engine.pid}/cmdline").read().split("\0")
        for flag, value in (("--model-path", "/models/llama"), ("--tp", "1"), ("--mem-fraction-static", "0.8"),
                            ("--context-length", "4096")):
            assert cmdline[cmdline.index(flag) + 1] == value
        first_beat = engine.last_heartbeat
        wait_for(lambda: engine_row(pk=engine.pk).last_heartbeat > first_beat, 5, what="heartbeat")

        # Queued: the task goes to inference.gpu.node-a and streams from this node's engine.
        block = engine.block
        request = ChatRequest(messages=[{"role": "user", "content": "hi"}], model="llama-fake", max_tokens=12,
                              organization_id=org.pk)
        deltas = asyncio.run(_collect(backend_for_block(block), request))
        assert "".join(d.content for d in deltas) == "".join(f"tok{i} " for i in range(12))

        # kill -9 of the engine: restarted, and the row says so.
        old_pid = engine.pid
        os.kill(old_pid, signal.SIGKILL)
        restarted = wait_for(lambda: engine_row(pk=engine.pk, state=Engine.READY, restarts=1), 30,
                             what="engine restarted")
        assert restarted.pid != old_pid
        deltas = asyncio.run(_collect(backend_for_block(block), request))
        assert "".join(d.content for d in deltas).startswith("tok0 ")
    finally:
        worker.kill(signal.SIGTERM)
        worker.process.wait(40)
        worker.stop()
    # Shutdown drains, then stops the engine; the row ends dead and the process is gone.
    final = engine_row(node="node-a")
    assert final.state == Engine.DEAD and final.pid is None
    with pytest.raises(ProcessLookupError):
        os.kill(restarted.pid, 0)


async def _collect(backend, request):
    forget_cache()
    try:
        return [d async for d in backend.stream_chat(request)]
    finally:
        await close_sessions()


def test_sigterm_drains_the_engine_at_once_and_stops_it_after_the_running_queued_request(
        org, worker_env, tmp_path):
    sglang_block(org, dispatch="queued")
    slow_cmd = f"{FAKE_ENGINE_CMD} --token-delay-ms 100 --tokens 12"
    worker = gpu_worker(worker_env, tmp_path, node="node-d", model="llama-fake", engine_cmd=slow_cmd)
    try:
        worker.wait_ready()
        engine = wait_for(lambda: engine_row(node="node-d", state=Engine.READY), 30, what="engine ready")
        # A queued request of ~4 s (40 tokens at 100 ms), running on this worker's engine.
        request = ChatRequest(messages=[{"role": "user", "content": "hi"}], model="llama-fake", max_tokens=40,
                              organization_id=org.pk)
        result: dict = {}

        def run_request() -> None:
            try:
                result["deltas"] = asyncio.run(_collect(backend_for_block(engine.block), request))
            except Exception as exc:  # noqa: BLE001 - reported by the assertion below
                result["error"] = exc

        client = threading.Thread(target=run_request, daemon=True)
        client.start()
        wait_for(lambda: get_json(f"{engine.endpoint}/stats")["active"] == 1, 15, what="request on the engine")
        time.sleep(0.5)

        worker.kill(signal.SIGTERM)
        # Draining as the shutdown begins, while Celery still waits for the running task.
        wait_for(lambda: engine_row(pk=engine.pk).state == Engine.DRAINING, 1.0, interval=0.05,
                 what="engine draining")
        forget_cache()
        assert pick(_ready_engines("llama-fake")) is None
        assert [e["routable"] for e in engine_list_for(organization=org)] == [False]
        # The engine keeps running and serving the request it has; the heartbeat keeps it draining.
        assert client.is_alive() and get_json(f"{engine.endpoint}/stats")["active"] == 1
        time.sleep(1.0)
        assert engine_row(pk=engine.pk).state == Engine.DRAINING
        assert worker.process.poll() is None

        client.join(30)
        assert "error" not in result, result.get("error")
        assert "".join(d.content for d in result["deltas"]) == "".join(f"tok{i} " for i in range(40))
        worker.process.wait(40)
    finally:
        worker.stop()
    # Then the existing stop path: the engine stopped, the row dead with no load, the process gone.
    final = engine_row(pk=engine.pk)
    assert final.state == Engine.DEAD and final.pid is None and final.load == 0
    with pytest.raises(ProcessLookupError):
        os.kill(engine.pid, 0)


def test_a_dead_engine_keeps_no_load(org):
    block = sglang_block(org)
    engine = Engine.objects.create(block=block, node="node-x", endpoint="http://127.0.0.1:1", state=Engine.READY,
                                   load=7.0, pid=1234)
    services.engine_set_state(engine_id=engine.pk, state=Engine.DRAINING)
    assert engine_row(pk=engine.pk).load == 7.0
    services.engine_set_state(engine_id=engine.pk, state=Engine.DEAD, clear_pid=True)
    final = engine_row(pk=engine.pk)
    assert final.state == Engine.DEAD and final.load == 0 and final.pid is None
