"""Real processes for the worker tests (tests/support/live_server.py): fake SGLang engines, Celery
workers, GPU workers.

Only the engine is fake. Workers are real `celery -A webapp worker` (or `manage.py
inference_worker`) subprocesses on the real Redis, reading the pytest database; tests that
use them are transactional so the workers see committed rows.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import redis
from django.conf import settings
from django.db import connection

from tests.support.live_server import (
    EngineProcess,
    Worker,
    database_url,
    start_celery_worker,
    start_fake_engine,
)


@pytest.fixture
def fake_engine() -> Iterator[EngineProcess]:
    engine = start_fake_engine(token_delay_ms=5, tokens=16)
    yield engine
    engine.stop()


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
    redis.Redis.from_url(settings.REDIS_URL).flushdb()
    yield {**os.environ, "DATABASE_URL": database_url(), "PYTHONUNBUFFERED": "1",
           "CELERY_UNACKED_RESTORE_INTERVAL": "1", "CELERY_UNACKED_RESTORE_THROTTLE": "1"}


@pytest.fixture
def cpu_worker(worker_env, tmp_path) -> Iterator[Worker]:
    worker = start_celery_worker(worker_env, tmp_path, queue="inference.cpu")
    yield worker
    worker.stop()
