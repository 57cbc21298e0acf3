"""`make run` with no settings at all: the embedded default (SQLite, no services) serves the
registry, and a second start is quick. With production settings (DEBUG=0) it serves the static files."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
UNSET = ("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "DEBUG", "ALLOWED_HOSTS", "SECURE_SSL_REDIRECT",
         "SWITCHBOARD_DEV_OPEN_ACCESS", "CELERY_BROKER_URL", "MAKEFLAGS", "MFLAGS", "MAKELEVEL")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get_json(url: str, body: dict | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, json.loads(response.read())


class Server:
    def __init__(self, data_dir: Path, *, env_overrides: dict[str, str] | None = None,
                 make_args: tuple[str, ...] = ()):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if k not in UNSET}
        env["SWITCHBOARD_DATA_DIR"] = str(data_dir)
        env.update(env_overrides or {})
        self.log = data_dir / f"make-run-{self.port}.log"
        self.started = time.monotonic()
        # A session of its own, so stopping it stops make and the server it started.
        self.process = subprocess.Popen(
            ["make", "run", "HOST=127.0.0.1", f"PORT={self.port}", *make_args],
            cwd=ROOT, env=env, stdout=self.log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True,
        )

    def wait_healthy(self, timeout: float) -> float:
        deadline = self.started + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"make run exited with {self.process.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                if get_json(f"{self.base}/healthz")[0] == 200:
                    return time.monotonic() - self.started
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"no /healthz within {timeout}s:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)


@pytest.mark.embedded
@pytest.mark.slow
def test_make_run_serves_the_registry_on_sqlite_and_restarts_quickly(tmp_path):
    first = Server(tmp_path)
    try:
        first.wait_healthy(timeout=240)
        status, listing = get_json(f"{first.base}/api/blocks")
        assert status == 200
        assert "smollm2-135m-instruct" in [b["id"] for b in listing["data"]]
        # A list lookup: json_each on SQLite.
        status, found = get_json(f"{first.base}/api/blocks/query",
                                 {"conditions": [{"variable": "tags", "operator": "IN", "value": ["builtin", "x"]},
                                                 {"variable": "inputProtocols", "operator": "==", "value": "text/plain"}]})
        assert [b["id"] for b in found["data"]] == ["smollm2-135m-instruct"]
        status, none = get_json(f"{first.base}/api/blocks/query",
                                {"conditions": [{"variable": "tags", "operator": "NOT IN", "value": ["builtin"]}]})
        assert none["data"] == []
    finally:
        first.stop()
    assert (tmp_path / "switchboard.sqlite3").exists()

    second = Server(tmp_path)
    try:
        elapsed = second.wait_healthy(timeout=60)
        # Already installed and migrated: nothing left but starting the server.
        assert elapsed < 30, f"second start took {elapsed:.1f}s"
        assert "smollm2-135m-instruct" in [b["id"] for b in get_json(f"{second.base}/api/blocks")[1]["data"]]
    finally:
        second.stop()


def fetch(url: str, headers: dict[str, str]) -> tuple[int, str, bytes]:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read()


@pytest.mark.slow
def test_make_run_with_debug_off_serves_htmx_the_chat_script_and_the_docs_assets(tmp_path, transactional_db):
    """Production settings (DATABASE_URL, REDIS_URL, SECRET_KEY, DEBUG=0, the SSL redirect left on behind
    a TLS proxy), started by `make run` itself, with no collectstatic anywhere: STATIC_ROOT stays empty.

    The server runs in this suite's own virtualenv, already installed (`make test` installs it first);
    `-o <venv>/.installed` keeps make from reinstalling the project into it. Its database is the test
    database, so `migrate` has nothing to do and the test's flush removes what load_builtin_blocks wrote.
    """
    from django.conf import settings

    db = settings.DATABASES["default"]
    venv = Path(sys.prefix)
    server = Server(tmp_path, env_overrides={
        "DATABASE_URL": f"postgres://{db['USER'] or 'postgres'}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}"
                        f"/{db['NAME']}",
        "REDIS_URL": os.environ.get("REDIS_URL") or settings.REDIS_URL,
        "SECRET_KEY": "test-only-secret-key-for-the-make-run-static-files-test",
        "DEBUG": "0", "ALLOWED_HOSTS": "127.0.0.1",
    }, make_args=(f"VENV={venv}", "-o", f"{venv}/.installed"))
    # What the TLS-terminating proxy in front of production adds (SECURE_PROXY_SSL_HEADER).
    behind_proxy = {"X-Forwarded-Proto": "https"}
    try:
        server.wait_healthy(timeout=120)
        status, _, page = fetch(f"{server.base}/api/docs/", behind_proxy)
        assert status == 200
        docs_assets = re.findall(r'(?:src|href)="(/static/[^"]+)"', page.decode())
        assert any(a.endswith("swagger-ui-bundle.js") for a in docs_assets), docs_assets
        expected = {".js": "javascript", ".css": "text/css", ".png": "image/png"}
        for asset in ["/static/htmx.min.js", "/static/chat.js", "/static/switchboard.css", *docs_assets]:
            status, content_type, content = fetch(server.base + asset, behind_proxy)
            assert status == 200, f"{asset}: {status}"
            assert expected[Path(asset).suffix] in content_type, f"{asset}: {content_type}"
            assert content, asset
        assert fetch(f"{server.base}/static/no-such-file.js", behind_proxy)[0] == 404
        # Served from where the files live: nothing was collected.
        assert not any((tmp_path / "staticfiles").iterdir())
    finally:
        server.stop()
