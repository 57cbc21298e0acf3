"""Fixtures shared by every test: one organization with an owner and a member, and an outsider; the fake
upstream and a live gateway (tests/support) for any test that talks to a server over real TCP."""

from __future__ import annotations

import gc
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from asgiref.sync import SyncToAsync
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.core.management.base import CommandError
from django.core.management.commands import flush
from django.db import OperationalError, connections
from rest_framework.test import APIClient

from inference import metrics, request_log
from inference.backends.openai_compat import close_sessions
from registry.asyncdb import close_thread_connections
from registry.auth import clear_principal_cache
from registry.models import Block, Membership, Organization
from registry.services import api_key_create
from registry.tenancy.access import clear_block_cache
from tests.factories import BlockFactory
from tests.support.fake_upstream import FakeUpstream
from tests.support.live_server import LiveGateway, start_gateway


@dataclass
class Party:
    """A user, their organization and a working API key."""

    user: object
    organization: Organization
    key: str

    def client(self) -> APIClient:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {self.key}")
        return client


def _party(username: str, org: Organization, role: str) -> Party:
    user = get_user_model().objects.create_user(username=username, password="pw-" + username)
    Membership.objects.create(user=user, organization=org, role=role)
    _, raw = api_key_create(organization=org, name=f"{username}-key", created_by=user)
    return Party(user=user, organization=org, key=raw)


# A test using one of these fixtures talks to a live server or a process of its own: it is `slow`.
LIVE_FIXTURES = frozenset({"live_gateway", "live_server", "fake_engine", "cpu_worker"})


def pytest_collection_modifyitems(items):
    for item in items:
        if LIVE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def _a_test_that_starts_a_process_is_marked_slow(request, monkeypatch):
    """The `slow` marker is kept honest: a test (or its fixtures) starting a process without it fails."""
    started: list = []
    popen_init = subprocess.Popen.__init__

    def recording_init(self, args, *rest, **kwargs):
        started.append(args)
        popen_init(self, args, *rest, **kwargs)

    monkeypatch.setattr(subprocess.Popen, "__init__", recording_init)
    yield
    if started and request.node.get_closest_marker("slow") is None:
        pytest.fail(f"{request.node.nodeid} starts a process ({started[0]!r}) but is not marked slow")


@pytest.fixture(autouse=True, scope="session")
def _flush_survives_live_servers():
    """Retry pytest-django's end-of-test TRUNCATE when PostgreSQL picks it as a deadlock victim.

    A live gateway or Celery worker subprocess writes metrics and engine heartbeats on its own clock;
    its insert (which locks the referenced block row) can deadlock with the TRUNCATE of every table.
    The flush runs in one transaction, so a failed one left nothing half-done and can run again.
    """
    handle = flush.Command.handle

    def handle_with_retry(self, **options):
        for attempt in range(5):
            try:
                return handle(self, **options)
            except CommandError as exc:
                if not isinstance(exc.__cause__, OperationalError) or attempt == 4:
                    raise
                time.sleep(0.2 * (attempt + 1))

    flush.Command.handle = handle_with_retry
    yield
    flush.Command.handle = handle


# The suite's fake upstreams (OpenAI-compatible, gRPC, SGLang engines) listen on 127.0.0.1, where an
# operator's internal upstream would be: the test operator opens exactly that address, the way a real
# one opens theirs (EGRESS_ALLOW), for this process and the gateways and workers it starts. The default
# policy stays as shipped; tests/gateway/test_egress.py narrows this back to it and checks that 127.0.0.2 and
# every other internal address stay refused.
TEST_EGRESS_ALLOW = "127.0.0.1"


@pytest.fixture(autouse=True, scope="session")
def _fake_upstreams_on_loopback_are_allowed():
    previous = os.environ.get("EGRESS_ALLOW")
    os.environ["EGRESS_ALLOW"] = TEST_EGRESS_ALLOW
    django_settings.EGRESS_ALLOW = [TEST_EGRESS_ALLOW]
    yield
    if previous is None:
        os.environ.pop("EGRESS_ALLOW", None)
    else:
        os.environ["EGRESS_ALLOW"] = previous


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # The party fixtures create users; full-strength PBKDF2 costs ~1.5 s per test on two cores.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
async def _close_upstream_sessions():
    # Each test has its own event loop; pooled upstream sessions must close with it.
    yield
    await close_sessions()


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup):
    """pytest-django's, and before it drops the test database, the connections threads kept let go:
    registry.asyncdb's ORM threads and asgiref's shared one (the tests' own async ORM calls), each
    closing its own, and those of threads that ended (a test's asyncio.to_thread), which close only
    when the garbage collector frees them."""
    yield
    close_thread_connections()
    SyncToAsync.single_thread_executor.submit(connections.close_all).result()
    gc.collect()


@pytest.fixture(autouse=True)
def _no_counts_outlive_their_test():
    """What a test's requests queued for the metrics and the request log goes with the test. Their
    flushers can live on a loop that outlives it (a worker loop); flushing a finished test's counts
    during a later test without database access fails, and the failure's logged traceback runs
    ast.parse on the flusher's thread, which on CPython 3.11 corrupts another thread's ast.parse
    (the AST converter's recursion counter is shared: "AST constructor recursion depth mismatch")."""
    yield
    metrics.discard_pending()
    request_log.discard_pending()


@pytest.fixture(autouse=True)
def _fresh_access_caches():
    """The principal cache and the access check's block cache, empty for every test."""
    clear_principal_cache()
    clear_block_cache()
    yield
    clear_principal_cache()
    clear_block_cache()


@pytest.fixture
def org(db) -> Organization:
    return Organization.objects.create(name="Acme", slug="acme")


@pytest.fixture
def other_org(db) -> Organization:
    return Organization.objects.create(name="Globex", slug="globex")


@pytest.fixture
def owner(org) -> Party:
    return _party("alice", org, Membership.OWNER)


@pytest.fixture
def member(org) -> Party:
    return _party("bob", org, Membership.MEMBER)


@pytest.fixture
def outsider(other_org) -> Party:
    return _party("mallory", other_org, Membership.OWNER)


@pytest.fixture
def operator(db) -> Party:
    """An owner of the platform organization: the server's operator (registry/roles.py)."""
    platform, _ = Organization.objects.get_or_create(slug=django_settings.SWITCHBOARD_PLATFORM_ORG,
                                                     defaults={"name": "Platform"})
    return _party("olivia", platform, Membership.OWNER)


@pytest.fixture
def anon() -> APIClient:
    return APIClient()


@pytest.fixture(scope="session")
def fake_upstream() -> Iterator[FakeUpstream]:
    """One fake upstream for the session: a test tells its requests apart by scenario name."""
    upstream = FakeUpstream().start()
    yield upstream
    upstream.stop()


@pytest.fixture(scope="session")
def live_gateway(django_db_setup, django_db_blocker) -> Iterator[LiveGateway]:
    """One uvicorn gateway for the session, on the test database (tests using it are transactional)."""
    gateway = start_gateway()
    yield gateway
    gateway.stop()


@pytest.fixture
def upstream_block(fake_upstream):
    """make(org, scenario="ok", **fields) -> an enabled `openai` LLM block on the fake upstream."""

    def make(organization, scenario: str = "ok", **fields) -> Block:
        config = {"base_url": fake_upstream.base_url(scenario), **fields.pop("config", {})}
        return BlockFactory(organization=organization, backend_type="openai", backend_config=config,
                            kind=Block.LLM, **fields)

    return make
