"""Tenancy fixtures: a clean quota store and rules cache per test (request helpers: tests/support/chat_requests.py)."""

from __future__ import annotations

import os

import pytest
from asgiref.sync import SyncToAsync
from django.conf import settings
from django.db import connections

from registry.principal import Principal
from registry.tenancy import quota as quota_module
from registry.tenancy.access import block_access
from registry.tenancy.admission import admit
from registry.tenancy.policy import Admission, AdmissionRequest
from registry.tenancy.rules import rules_cache


def _flush_redis() -> None:
    if not settings.REDIS_URL:
        return
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL)
    for pattern in ("sb:quota:*", "sb:tenancy:*"):
        keys = list(client.scan_iter(pattern))
        if keys:
            client.delete(*keys)
    client.close()


@pytest.fixture(autouse=True)
def _clean_tenancy_state():
    assert settings.REDIS_URL or os.environ.get("REDIS_URL") is None
    _flush_redis()
    quota_module._store = None
    rules_cache.clear()
    yield
    quota_module._store = None
    rules_cache.clear()
    _flush_redis()
    # The tests' own async ORM calls (acreate, ...) ran in asgiref's shared thread: close its
    # connection so the test database can be dropped.
    SyncToAsync.single_thread_executor.submit(connections.close_all).result()


async def admit_as(*, principal: Principal, request: AdmissionRequest, estimated_prompt_tokens: int) -> Admission:
    """admit() as the gateway reaches it: after the one access check of the model the request names."""
    access = await block_access(principal=principal, model=request.model)
    return await admit(access=access, request=request, estimated_prompt_tokens=estimated_prompt_tokens)
