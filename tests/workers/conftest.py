"""Real processes for the worker tests: fake SGLang engines, Celery workers, GPU workers.

Only the engine is fake. Workers are real `celery -A webapp worker` (or `manage.py
inference_worker`) subprocesses on the real Redis, reading the pytest database; tests that
use them are transactional so the workers see committed rows.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis
from django.conf import settings
from django.db import connection

from inference.workers.supervisor import stop_process_group

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str, timeout: float = 2.0):
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read())


def wait_for(predicate, timeout: float, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def stop_process(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
    stop_process_group(proc, sig=sig, grace_s=timeout)


@dataclass
class FakeEngine:
    url: str
    proc: subprocess.Popen

    def stats(self) -> dict:
        return get_json(f"{self.url}/stats")


def start_fake_engine(*, token_delay_ms: float = 5, tokens: int = 16, fail_mode: str = "none") -> FakeEngine:
    port = free_port()
    proc = subprocess.Popen([PY, "-m", "tests.workers.fake_sglang", "--port", str(port), "--token-delay-ms",
                             str(token_delay_ms), "--tokens", str(tokens), "--fail-mode", fail_mode],
                            cwd=ROOT, start_new_session=True)
    engine = FakeEngine(url=f"http://127.0.0.1:{port}", proc=proc)

    def up() -> bool:
        try:
            return get_json(f"{engine.url}/stats") is not None
        except OSError:
            return False

    wait_for(up, 15, what="fake engine")
    return engine


@pytest.fixture
def fake_engine() -> Iterator[FakeEngine]:
    engine = start_fake_engine(token_delay_ms=5, tokens=16)
    yield engine
    stop_process(engine.proc)


@pytest.fixture(scope="session", autouse=True)
def _drop_stray_connections(django_db_setup, django_db_blocker) -> Iterator[None]:
    yield
    # Connections left by killed workers and helper threads would block dropping the test database.
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                       "WHERE datname = current_database() AND pid <> pg_backend_pid()")


@pytest.fixture(scope="session")
def worker_env(django_db_setup, django_db_blocker) -> Iterator[dict[str, str]]:
    """The environment a worker subprocess needs to see the pytest database and our Redis db."""
    parts = urlsplit(os.environ["DATABASE_URL"])
    test_db_url = urlunsplit(parts._replace(path="/" + settings.DATABASES["default"]["NAME"]))
    redis.Redis.from_url(settings.REDIS_URL).flushdb()
    yield {**os.environ, "DATABASE_URL": test_db_url, "PYTHONUNBUFFERED": "1",
            "CELERY_UNACKED_RESTORE_INTERVAL": "1", "CELERY_UNACKED_RESTORE_THROTTLE": "1"}


class Worker:
    def __init__(self, argv: list[str], env: dict[str, str], log: Path):
        self.log = log
        self.handle = log.open("wb")
        self.proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=self.handle, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self, timeout: float = 60) -> None:
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited {self.proc.returncode}:\n{self.output()[-3000:]}")
            return " ready." in self.output()

        wait_for(ready, timeout, interval=0.2, what="celery worker ready")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        os.killpg(self.proc.pid, sig) if sig == signal.SIGKILL else self.proc.send_signal(sig)

    def stop(self) -> None:
        stop_process(self.proc)
        self.handle.close()


def celery_worker(env: dict[str, str], tmp_path: Path, *, queue: str, concurrency: int = 80,
                  extra_env: dict[str, str] | None = None) -> Worker:
    name = f"test-{uuid.uuid4().hex[:8]}@{socket.gethostname()}"
    argv = [PY, "-m", "celery", "-A", "webapp", "worker", "-Q", queue, "-P", "threads", "-c", str(concurrency),
            "-n", name, "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "INFO"]
    worker = Worker(argv, {**env, **(extra_env or {})}, tmp_path / f"{name}.log")
    worker.wait_ready()
    return worker


@pytest.fixture
def cpu_worker(worker_env, tmp_path) -> Iterator[Worker]:
    worker = celery_worker(worker_env, tmp_path, queue="inference.cpu")
    yield worker
    worker.stop()
