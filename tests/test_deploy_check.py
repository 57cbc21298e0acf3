"""Production settings pass Django's deployment checklist with no warning at all."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

from django.conf import settings

ROOT = Path(__file__).resolve().parents[1]


def production_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DEBUG", "SECURE_SSL_REDIRECT", "ALLOWED_HOSTS")}
    db = settings.DATABASES["default"]
    env.update(DATABASE_URL=f"postgres://{db['USER'] or 'postgres'}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/postgres",
               SECRET_KEY=secrets.token_urlsafe(50), ALLOWED_HOSTS="switchboard.example.com")
    env.update(overrides)
    return env


def test_manage_py_check_deploy_is_clean_under_production_settings():
    result = subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
                            cwd=ROOT, env=production_env(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_settings_refuse_to_start_without_a_secret_key():
    env = production_env()
    env.pop("SECRET_KEY")
    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_production_serves_the_collected_static_files_the_pages_need(tmp_path):
    """DEBUG off, after collectstatic (the image runs it, docker/Dockerfile): the pages' files are served."""
    import socket
    import time
    import urllib.request

    env = production_env(SWITCHBOARD_DATA_DIR=str(tmp_path), ALLOWED_HOSTS="127.0.0.1", SECURE_SSL_REDIRECT="0")
    collected = subprocess.run([sys.executable, "manage.py", "collectstatic", "--noinput"], cwd=ROOT, env=env,
                               capture_output=True, text=True, timeout=120)
    assert collected.returncode == 0, collected.stderr
    assert "RUN python manage.py collectstatic --noinput" in (ROOT / "docker" / "Dockerfile").read_text()

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "uvicorn", "webapp.asgi:application", "--port", str(port),
                               "--lifespan", "off"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        def status(path: str) -> int:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
                    return response.status
            except urllib.error.HTTPError as exc:
                return exc.code

        deadline = time.monotonic() + 30
        while True:
            try:
                status("/healthz")
                break
            except OSError:
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.2)
        assert status("/static/htmx.min.js") == 200
        assert status("/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js") == 200
        assert status("/static/no-such-file.js") == 404
    finally:
        server.terminate()
        server.wait(10)
