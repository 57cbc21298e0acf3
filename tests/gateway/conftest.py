"""A live gateway (uvicorn in a subprocess, over real TCP) and a fake upstream, for real-client tests.

The server reads the test database, so tests that talk to it commit their data
(`transaction=True`); pytest-django truncates the tables afterwards.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.db import connection

from inference import metrics
from registry.models import Block
from tests.factories import BlockFactory
from tests.gateway.fake_upstream import FakeUpstream

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)


def request(method: str, url: str, body: bytes | str | None = None, headers: dict[str, str] | None = None,
            timeout: float = 10) -> Reply:
    """One plain HTTP request, for what the openai client would refuse to send."""
    parsed = urlsplit(url)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=timeout)
    try:
        conn.request(method, parsed.path + (f"?{parsed.query}" if parsed.query else ""),
                     body=body.encode() if isinstance(body, str) else body, headers=headers or {})
        resp = conn.getresponse()
        return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()


@dataclass
class LiveGateway:
    url: str
    process: subprocess.Popen

    @property
    def v1(self) -> str:
        return f"{self.url}/v1"

    @property
    def ws(self) -> str:
        return self.url.replace("http://", "ws://") + "/ws/chat/"


@pytest.fixture(scope="session")
def fake_upstream() -> Iterator[FakeUpstream]:
    upstream = FakeUpstream().start_in_thread()
    yield upstream
    upstream.stop()


def _database_url() -> str:
    s = connection.settings_dict
    return f"postgres://{s['USER']}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


def start_gateway() -> LiveGateway:
    """uvicorn in its production shape on the test database, on a free port."""
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "DEBUG": "0",
        "SECURE_SSL_REDIRECT": "0",
        "SWITCHBOARD_DEV_OPEN_ACCESS": "0",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "SECRET_KEY": os.environ.get("SECRET_KEY", "test-only-secret-key-not-for-production"),
    }
    log = open(ROOT / "var" / f"live-gateway-{port}.log", "wb") if (ROOT / "var").is_dir() else subprocess.DEVNULL
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "webapp.asgi:application", "--host", "127.0.0.1", "--port", str(port),
         "--loop", "uvloop", "--http", "httptools", "--ws", "websockets-sansio", "--no-access-log",
         "--lifespan", "on", "--timeout-graceful-shutdown", "5"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"the gateway exited with {process.returncode}; see var/live-gateway-{port}.log")
        try:
            if request("GET", f"{url}/v1/models").status == 401:
                return LiveGateway(url=url, process=process)
        except OSError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            raise RuntimeError("the gateway did not start within 30 s")
        time.sleep(0.2)


@pytest.fixture(scope="session")
def live_gateway(django_db_setup, django_db_blocker) -> Iterator[LiveGateway]:
    gateway = start_gateway()
    yield gateway
    gateway.process.terminate()
    try:
        # Past --timeout-graceful-shutdown uvicorn cancels what still runs: a wait beyond it is a hang.
        gateway.process.wait(20)
    except subprocess.TimeoutExpired:
        gateway.process.kill()
        raise


@pytest.fixture
def upstream_block(fake_upstream):
    """make(org, scenario="ok", **fields) -> an enabled `openai` LLM block on the fake upstream."""

    def make(organization, scenario: str = "ok", **fields) -> Block:
        config = {"base_url": fake_upstream.base_url(scenario), **fields.pop("config", {})}
        return BlockFactory(organization=organization, backend_type="openai", backend_config=config,
                            kind=Block.LLM, **fields)

    return make


@pytest.fixture(autouse=True)
def _no_metrics_left_behind():
    """In-process calls record metrics; drop what a test left so nothing flushes into a later test's tables."""
    yield
    metrics.discard_pending()


