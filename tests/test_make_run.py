"""`make run` with no settings at all: the embedded default (SQLite, no services) serves the
registry, and a second start is quick. With production settings (DEBUG=0) it serves the static files."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest

from tests.support.live_server import MakeRun
from tests.support.plain_http import call_json, fetch


@pytest.mark.embedded
@pytest.mark.slow
def test_make_run_serves_the_registry_on_sqlite_and_restarts_quickly(tmp_path):
    first = MakeRun(tmp_path)
    try:
        first.wait_healthy(timeout=240)
        status, listing = call_json(f"{first.base}/api/blocks")
        assert status == 200
        assert "smollm2-135m-instruct" in [b["id"] for b in listing["data"]]
        # A list lookup: json_each on SQLite.
        status, found = call_json(f"{first.base}/api/blocks/query",
                                 {"conditions": [{"variable": "tags", "operator": "IN", "value": ["builtin", "x"]},
                                                 {"variable": "inputProtocols", "operator": "==", "value": "text/plain"}]})
        assert [b["id"] for b in found["data"]] == ["smollm2-135m-instruct"]
        status, none = call_json(f"{first.base}/api/blocks/query",
                                {"conditions": [{"variable": "tags", "operator": "NOT IN", "value": ["builtin", "embeddings"]}]})
        assert none["data"] == []
    finally:
        first.stop()
    assert (tmp_path / "switchboard.sqlite3").exists()

    second = MakeRun(tmp_path)
    try:
        elapsed = second.wait_healthy(timeout=60)
        # Already installed and migrated: nothing left but starting the server.
        assert elapsed < 30, f"second start took {elapsed:.1f}s"
        assert "smollm2-135m-instruct" in [b["id"] for b in call_json(f"{second.base}/api/blocks")[1]["data"]]
    finally:
        second.stop()


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
    server = MakeRun(tmp_path, env_overrides={
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
