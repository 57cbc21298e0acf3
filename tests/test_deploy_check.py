"""Production settings pass Django's deployment checklist with no warning at all."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys

import pytest
from django.conf import settings

from tests.support.live_server import ROOT, start_gateway
from tests.support.plain_http import fetch


def production_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DEBUG", "SECURE_SSL_REDIRECT", "ALLOWED_HOSTS")}
    db = settings.DATABASES["default"]
    env.update(DATABASE_URL=f"postgres://{db['USER'] or 'postgres'}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/postgres",
               SECRET_KEY=secrets.token_urlsafe(50), ALLOWED_HOSTS="switchboard.example.com")
    env.update(overrides)
    return env


@pytest.mark.slow
def test_manage_py_check_deploy_is_clean_under_production_settings():
    result = subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
                            cwd=ROOT, env=production_env(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


@pytest.mark.slow
def test_production_settings_refuse_to_start_without_a_secret_key():
    env = production_env()
    env.pop("SECRET_KEY")
    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


@pytest.mark.slow
def test_production_serves_the_collected_static_files_the_pages_need(tmp_path):
    """DEBUG off, after collectstatic (the image runs it, docker/Dockerfile): the pages' files are served."""
    env = production_env(SWITCHBOARD_DATA_DIR=str(tmp_path), ALLOWED_HOSTS="127.0.0.1", SECURE_SSL_REDIRECT="0")
    collected = subprocess.run([sys.executable, "manage.py", "collectstatic", "--noinput"], cwd=ROOT, env=env,
                               capture_output=True, text=True, timeout=120)
    assert collected.returncode == 0, collected.stderr
    assert "RUN python manage.py collectstatic --noinput" in (ROOT / "docker" / "Dockerfile").read_text()

    server = start_gateway(env["DATABASE_URL"], SWITCHBOARD_DATA_DIR=str(tmp_path), ALLOWED_HOSTS="127.0.0.1",
                           SECRET_KEY=env["SECRET_KEY"])
    try:
        def status(path: str) -> int:
            return fetch(f"{server.url}{path}", timeout=2)[0]

        assert status("/static/htmx.min.js") == 200
        assert status("/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js") == 200
        assert status("/static/no-such-file.js") == 404
    finally:
        server.stop()
