"""Engine supervision: one SGLang server subprocess per assigned model, owned by the worker process.

Each supervisor is a thread of the worker's main process. It starts the engine with the
block's engine settings, waits for /health, registers the Engine row, heartbeats it (with
the engine's own load from /get_load), restarts the engine when it dies or stops answering,
and on shutdown drains (no new routing) then stops it. Draining begins as soon as the worker's
shutdown does (drain()), while Celery still waits for the running tasks; stop() comes after.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field

from django.conf import settings
from django.db import close_old_connections, connections

from inference.models import Engine
from inference.workers import services

log = logging.getLogger(__name__)

SGLANG_COMMAND = f"{sys.executable} -m sglang.launch_server"

# By block pk (ids repeat across organizations), and by id for specs made without a block.
_local: dict[int | str, EngineSupervisor] = {}


def local_endpoint(block_id: int | str) -> str | None:
    """The endpoint of this process's ready engine for a block pk or id (queued tasks use their own node's)."""
    supervisor = _local.get(block_id)
    if supervisor is not None and supervisor.ready.is_set():
        return supervisor.endpoint
    return None


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def stop_process_group(process: subprocess.Popen, *, sig: int = signal.SIGTERM, grace_s: float = 10.0) -> None:
    """Signal a process started with start_new_session and its children; SIGKILL them after grace_s."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, sig)
        process.wait(grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(5)
    except ProcessLookupError:
        pass


@dataclass
class EngineSpec:
    block_id: str
    node: str
    gpu: str
    port: int
    host: str = "127.0.0.1"
    advertise_host: str = "127.0.0.1"
    command: str = SGLANG_COMMAND
    model_path: str = ""
    tp: int = 1
    mem_fraction_static: float | None = None
    context_length: int | None = None
    extra_args: list[str] = field(default_factory=list)
    capacity: int = 64
    block_pk: int | None = None

    @property
    def block_key(self) -> int | str:
        return self.block_pk if self.block_pk is not None else self.block_id

    @classmethod
    def from_block(cls, block, *, node: str, gpu: str, port: int, host: str, advertise_host: str,
                   command: str | None) -> EngineSpec:
        engine = (block.backend_config or {}).get("engine") or {}
        return cls(block_id=block.block_id, node=node, gpu=gpu, port=port, host=host,
                   advertise_host=advertise_host, command=command or engine.get("command") or SGLANG_COMMAND,
                   model_path=engine.get("model_path") or block.block_id, tp=int(engine.get("tp", 1)),
                   mem_fraction_static=engine.get("mem_fraction_static"),
                   context_length=engine.get("context_length"),
                   extra_args=[str(a) for a in engine.get("extra_args", [])],
                   capacity=int(engine.get("capacity", 64)), block_pk=block.pk)

    @property
    def endpoint(self) -> str:
        return f"http://{self.advertise_host}:{self.port}"

    def argv(self) -> list[str]:
        argv = [*shlex.split(self.command), "--model-path", self.model_path, "--tp", str(self.tp),
                "--host", self.host, "--port", str(self.port), "--served-model-name", self.block_id]
        if self.mem_fraction_static is not None:
            argv += ["--mem-fraction-static", str(self.mem_fraction_static)]
        if self.context_length is not None:
            argv += ["--context-length", str(self.context_length)]
        return argv + self.extra_args


def _get_json(url: str, timeout: float = 1.0):
    with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - our own engine
        body = resp.read()
        return resp.status, (json.loads(body) if body[:1] in (b"{", b"[") else None)


class EngineSupervisor(threading.Thread):
    def __init__(self, spec: EngineSpec, *, heartbeat_s: float | None = None,
                 start_timeout_s: float | None = None, unhealthy_after: int = 3):
        super().__init__(name=f"engine-{spec.block_id}", daemon=True)
        self.spec = spec
        self.endpoint = spec.endpoint
        self.heartbeat_s = heartbeat_s or settings.ENGINE_HEARTBEAT_S
        self.start_timeout_s = start_timeout_s or settings.ENGINE_START_TIMEOUT_S
        self.unhealthy_after = unhealthy_after
        self.process: subprocess.Popen | None = None
        self.engine_id: int | None = None
        self.ready = threading.Event()
        self.stopping = threading.Event()
        self.stopped = threading.Event()
        # Set once by drain(); the lock orders its write against the (re)start's ready write, so
        # a drain that began is never undone by an engine becoming healthy after it.
        self.draining = threading.Event()
        self._state_lock = threading.Lock()

    # -- process --------------------------------------------------------------------------
    def _launch(self) -> subprocess.Popen:
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": self.spec.gpu} if self.spec.gpu else dict(os.environ)
        log.info("starting engine for %s: %s", self.spec.block_id, shlex.join(self.spec.argv()))
        # A new session: a signal to the worker's terminal does not hit the engine behind our back.
        return subprocess.Popen(self.spec.argv(), env=env, start_new_session=True)

    def _terminate(self, grace_s: float = 10.0) -> None:
        if self.process is not None:
            # SGLang spawns scheduler/detokenizer children: signal the whole process group.
            stop_process_group(self.process, grace_s=grace_s)

    def _healthy(self) -> bool:
        try:
            status, _ = _get_json(f"{self.endpoint}/health")
            return status == 200
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def _load(self) -> float | None:
        """Requests running + waiting on the engine, summed over its data-parallel ranks."""
        try:
            status, body = _get_json(f"{self.endpoint}/get_load")
        except (urllib.error.URLError, OSError, ValueError):
            return None
        if status != 200 or body is None:
            return None
        ranks = body if isinstance(body, list) else [body]
        return float(sum(r.get("num_reqs", 0) + r.get("num_waiting_reqs", 0) for r in ranks))

    def _wait_healthy(self) -> bool:
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline and not self.stopping.is_set():
            if self.process.poll() is not None:
                return False
            if self._healthy():
                return True
            services.engine_heartbeat(engine_id=self.engine_id, load=None)
            time.sleep(0.2)
        return False

    # -- lifecycle ------------------------------------------------------------------------
    def run(self) -> None:
        _local[self.spec.block_key] = self
        try:
            first = True
            while not self.stopping.is_set():
                self.process = self._launch()
                self.engine_id = services.engine_register(
                    block_id=self.spec.block_id, block_pk=self.spec.block_pk, node=self.spec.node, gpu=self.spec.gpu,
                    endpoint=self.endpoint, capacity=self.spec.capacity, pid=self.process.pid,
                    restarted=not first)
                first = False
                if not self._wait_healthy():
                    log.error("engine for %s did not become healthy; restarting", self.spec.block_id)
                    self._terminate(grace_s=5)
                    time.sleep(1.0)
                    continue
                with self._state_lock:
                    state = Engine.DRAINING if self.draining.is_set() else Engine.READY
                    services.engine_set_state(engine_id=self.engine_id, state=state)
                # Set while draining too: queued tasks still running here use it (local_endpoint).
                self.ready.set()
                self._watch()
                self.ready.clear()
        finally:
            close_old_connections()
            self.stopped.set()

    def _watch(self) -> None:
        """Heartbeat until the engine dies, stops answering, or we are told to stop."""
        failures = 0
        while not self.stopping.wait(self.heartbeat_s):
            if self.process.poll() is not None:
                log.error("engine for %s exited with %s; restarting", self.spec.block_id, self.process.returncode)
                return
            load = self._load()
            healthy = load is not None or self._healthy()
            failures = 0 if healthy else failures + 1
            if failures >= self.unhealthy_after:
                log.error("engine for %s stopped answering; restarting", self.spec.block_id)
                self._terminate(grace_s=5)
                return
            if healthy:
                services.engine_heartbeat(engine_id=self.engine_id, load=load)

    def drain(self) -> None:
        """Mark the engine draining (the gateway stops routing here); it keeps running and serving."""
        with self._state_lock:
            # Once only: a late call (the shutdown signal's thread) must not follow stop()'s `dead`.
            if self.draining.is_set():
                return
            self.draining.set()
            if self.engine_id is not None:
                services.engine_set_state(engine_id=self.engine_id, state=Engine.DRAINING)

    def drain_in_thread(self) -> threading.Thread:
        """drain() off the calling thread: from a signal handler, whose thread may be mid-query."""
        def run() -> None:
            try:
                self.drain()
            finally:
                connections.close_all()  # this thread's own connection

        thread = threading.Thread(target=run, name=f"drain-{self.spec.block_id}", daemon=True)
        thread.start()
        return thread

    def stop(self, *, drain_s: float = 30.0) -> None:
        """Drain (if not yet), wait for running requests, stop the engine."""
        self.drain()
        self.stopping.set()
        deadline = time.monotonic() + drain_s
        while time.monotonic() < deadline and self.process is not None and self.process.poll() is None:
            load = self._load()
            if not load:
                break
            time.sleep(0.2)
        self._terminate()
        self.join(10)
        if self.engine_id is not None:
            services.engine_set_state(engine_id=self.engine_id, state=Engine.DEAD, clear_pid=True)
        _local.pop(self.spec.block_key, None)
        close_old_connections()
