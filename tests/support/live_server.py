"""The one way the suite starts a process of its own and waits for it: a live gateway (uvicorn, as
production runs it), `make run`, Celery and GPU workers, the fake SGLang engine and the reference
llama.cpp server.

Each runs in a session of its own (so stopping it stops what it started), with its output in a log
file when there is one; waiting for it to be ready fails loudly, with the log's tail, when it exits
or does not get ready in time. A server reading the test database only sees committed rows: tests
that talk to one are transactional (`transaction=True`), and pytest-django truncates afterwards.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.db import connection

from tests.support.plain_http import get_json, request
from tests.support.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable
# Where a gateway's log goes when the checkout has var/ (make creates it): kept for a failed run.
LOG_DIR = ROOT / "var"


def wait_for(predicate: Callable[[], Any], timeout: float, interval: float = 0.1, what: str = "condition") -> Any:
    """Poll until `predicate()` is truthy and return it; an AssertionError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def database_url() -> str:
    """The pytest database as a DATABASE_URL, for a server process that must read what a test wrote."""
    s = connection.settings_dict
    credentials = s["USER"] + (f":{s['PASSWORD']}" if s.get("PASSWORD") else "")
    return f"postgres://{credentials}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


class LiveProcess:
    """A subprocess in a session of its own, its output in `log` (or discarded when log is None)."""

    def __init__(self, argv: list[str], *, env: dict[str, str] | None = None, log: Path | None = None,
                 name: str = "process"):
        self.name = name
        self.log = log
        self._handle = log.open("wb") if log is not None else None
        self.process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=self._handle or subprocess.DEVNULL,
                                        stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log is not None else ""

    def wait_until(self, ready: Callable[[], Any], timeout: float, interval: float = 0.2) -> None:
        """Poll `ready()` (an OSError counts as not yet) until it is truthy; fail, with the log's tail, if
        the process exits first or is not ready within `timeout` seconds (then it is stopped)."""
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise AssertionError(f"{self.name} exited with {self.process.returncode}:\n{self.output()[-3000:]}")
            try:
                if ready():
                    return
            except (OSError, http.client.HTTPException):
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"{self.name} was not ready within {timeout}s:\n{self.output()[-3000:]}")
            time.sleep(interval)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """SIGKILL takes the whole session (a crash); any other signal goes to the process alone."""
        os.killpg(self.process.pid, sig) if sig == signal.SIGKILL else self.process.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM, grace_s: float = 15.0, *, must_exit: bool = False) -> None:
        """Signal the session, SIGKILL it after grace_s; with must_exit, needing the SIGKILL is a failure."""
        hung = False
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, sig)
                self.process.wait(grace_s)
            except subprocess.TimeoutExpired:
                hung = True
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
            except ProcessLookupError:
                pass
        if self._handle is not None:
            self._handle.close()
        if hung and must_exit:
            raise AssertionError(f"{self.name} did not stop within {grace_s}s:\n{self.output()[-3000:]}")


class LiveGateway(LiveProcess):
    """`webapp.asgi:application` under uvicorn with production's loop, HTTP and WebSocket stacks."""

    def __init__(self, env: dict[str, str]):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        super().__init__(
            [PY, "-m", "uvicorn", "webapp.asgi:application", "--host", "127.0.0.1", "--port", str(self.port),
             "--loop", "uvloop", "--http", "httptools", "--ws", "websockets-sansio", "--no-access-log",
             "--lifespan", "on", "--timeout-graceful-shutdown", "5"],
            env=env, log=LOG_DIR / f"live-gateway-{self.port}.log" if LOG_DIR.is_dir() else None,
            name=f"the gateway on port {self.port}")

    @property
    def v1(self) -> str:
        return f"{self.url}/v1"

    @property
    def ws(self) -> str:
        return self.url.replace("http://", "ws://") + "/ws/chat/"

    def stop(self, sig: int = signal.SIGTERM, grace_s: float = 20.0, *, must_exit: bool = True) -> None:
        # Past --timeout-graceful-shutdown uvicorn cancels what still runs: a wait beyond it is a hang.
        super().stop(sig, grace_s, must_exit=must_exit)


def gateway_env(database: str, **overrides: str) -> dict[str, str]:
    """Production settings (DEBUG off, no open dev access) on `database`, over this process's environment."""
    return {
        **os.environ,
        "DATABASE_URL": database,
        "DEBUG": "0",
        "SECURE_SSL_REDIRECT": "0",
        "SWITCHBOARD_DEV_OPEN_ACCESS": "0",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "SECRET_KEY": os.environ.get("SECRET_KEY", "test-only-secret-key-not-for-production"),
        **overrides,
    }


def start_gateway(database: str | None = None, **overrides: str) -> LiveGateway:
    """A gateway on a free port, on the test database unless told another; ready when /v1 answers 401."""
    gateway = LiveGateway(gateway_env(database or database_url(), **overrides))
    gateway.wait_until(lambda: request("GET", f"{gateway.v1}/models").status == 401, timeout=30)
    return gateway


class MakeRun(LiveProcess):
    """`make run` on a free port, with the environment's settings removed but for `env_overrides`."""

    UNSET = ("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "DEBUG", "ALLOWED_HOSTS", "SECURE_SSL_REDIRECT",
             "SWITCHBOARD_DEV_OPEN_ACCESS", "CELERY_BROKER_URL", "MAKEFLAGS", "MFLAGS", "MAKELEVEL")

    def __init__(self, data_dir: Path, *, env_overrides: dict[str, str] | None = None,
                 make_args: tuple[str, ...] = ()):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if k not in self.UNSET}
        env["SWITCHBOARD_DATA_DIR"] = str(data_dir)
        env.update(env_overrides or {})
        self.started = time.monotonic()
        super().__init__(["make", "run", "HOST=127.0.0.1", f"PORT={self.port}", *make_args], env=env,
                         log=data_dir / f"make-run-{self.port}.log", name="make run")

    def wait_healthy(self, timeout: float) -> float:
        """Seconds from the start until /healthz answered 200 (within `timeout` of the start)."""
        self.wait_until(lambda: request("GET", f"{self.base}/healthz").status == 200,
                        timeout=max(0.0, self.started + timeout - time.monotonic()))
        return time.monotonic() - self.started


class EngineProcess(LiveProcess):
    """tests/support/fake_sglang.py on a free port."""

    def __init__(self, *, token_delay_ms: float, tokens: int, fail_mode: str):
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        super().__init__([PY, "-m", "tests.support.fake_sglang", "--port", str(port), "--token-delay-ms",
                          str(token_delay_ms), "--tokens", str(tokens), "--fail-mode", fail_mode],
                         name="the fake engine")

    def stats(self) -> dict:
        return get_json(f"{self.url}/stats")


def start_fake_engine(*, token_delay_ms: float = 5, tokens: int = 16, fail_mode: str = "none") -> EngineProcess:
    engine = EngineProcess(token_delay_ms=token_delay_ms, tokens=tokens, fail_mode=fail_mode)
    engine.wait_until(lambda: engine.stats() is not None, timeout=15, interval=0.1)
    return engine


# The fake engine as a worker's --engine-cmd: the supervisor adds SGLang's own flags (port, model...).
FAKE_ENGINE_CMD = f"{PY} -m tests.support.fake_sglang"


class Worker(LiveProcess):
    """A worker process (Celery, or manage.py inference_worker); ready when Celery prints its banner."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path):
        super().__init__(argv, env=env, log=log, name=f"the worker {log.stem}")

    def wait_ready(self, timeout: float = 60) -> None:
        self.wait_until(lambda: " ready." in self.output(), timeout)


def start_celery_worker(env: dict[str, str], log_dir: Path, *, queue: str, concurrency: int = 80,
                        extra_env: dict[str, str] | None = None) -> Worker:
    name = f"test-{uuid.uuid4().hex[:8]}@{socket.gethostname()}"
    argv = [PY, "-m", "celery", "-A", "webapp", "worker", "-Q", queue, "-P", "threads", "-c", str(concurrency),
            "-n", name, "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "INFO"]
    worker = Worker(argv, {**env, **(extra_env or {})}, log_dir / f"{name}.log")
    worker.wait_ready()
    return worker


def start_llama_reference(model: Path) -> tuple[str, LiveProcess]:
    """llama_cpp.server on `model` (tests/support/llama_reference.py); its base URL once it answers."""
    port = free_port()
    server = LiveProcess([PY, "-m", "tests.support.llama_reference", "--model", str(model), "--port", str(port)],
                         name="llama_cpp.server")
    url = f"http://127.0.0.1:{port}"
    server.wait_until(lambda: request("GET", f"{url}/v1/models").status == 200, timeout=30)
    return url, server
