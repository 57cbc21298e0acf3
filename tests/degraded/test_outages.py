"""Degraded dependencies: a live gateway on a Redis and a PostgreSQL of the test's own, stopped mid-run.

Redis down: every chat is a 503 `redis_unavailable` with Retry-After within a second (quotas
cannot be enforced without Redis: admission fails closed). PostgreSQL down: keys and blocks
warm in the gateway's caches keep being served for DB_OUTAGE_GRACE_S (3 s here) past their
2 s lifetime, everything else is a 503 `database_unavailable`. Both recover with no restart.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest
import redis
from websockets.exceptions import ConnectionClosed

from registry.tenancy.rules import RULES_POLL_S, VERSION_KEY
from tests.support.fake_upstream import FakeUpstream
from tests.support.live_server import ROOT, LiveGateway, gateway_env, start_gateway
from tests.support.plain_http import Reply, request
from tests.support.private_services import PrivatePostgres, PrivateRedis
from tests.support.websocket_client import connect_sync

pytestmark = pytest.mark.slow

GRACE_S = 3.0
LOOKUP_TIMEOUT_S = 1.0  # DB_LOOKUP_TIMEOUT_S for the gateway under test (default 3)
REDIS_SOCKET_TIMEOUT_S = 2.0  # the default
CACHE_TTL_S = 2.0  # registry.auth.KEY_CACHE_SECONDS and registry.tenancy.access.BLOCK_CACHE_SECONDS
FAST_S = 1.5  # "no hang": how long a degraded answer may take at most (a loaded 2-core CI machine included)

SEED = """
import json
from registry.models import Block, Membership, Organization
from registry.services import api_key_create
from registry.tenancy.models import Quota

acme = Organization.objects.create(name="Acme", slug="acme")
globex = Organization.objects.create(name="Globex", slug="globex")
keys = {}
for name, org, role in (("owner", acme, ""), ("member", acme, Membership.MEMBER), ("cold", acme, ""),
                        ("outsider", globex, "")):
    keys[name] = api_key_create(organization=org, name=name, role=role)[1]
# An organization-wide quota: every chat reserves in Redis, as in production.
Quota.objects.create(organization=acme, requests_per_minute=100000)
for block_id in ("warm-model", "cold-model"):
    Block.objects.create(block_id=block_id, name=block_id, kind=Block.LLM, organization=acme, backend_type="openai",
                         backend_config={"base_url": UPSTREAM})
# Globex has no quota: its chats reach Redis only for the rules version, and still fail closed.
Block.objects.create(block_id="globex-model", name="globex-model", kind=Block.LLM, organization=globex,
                     backend_type="openai", backend_config={"base_url": UPSTREAM})
print(json.dumps(keys))
"""


@dataclass
class Stack:
    url: str
    redis: PrivateRedis
    postgres: PrivatePostgres
    keys: dict[str, str]
    gateway: LiveGateway

    def chat(self, key: str, model: str = "warm-model") -> tuple[Reply, float]:
        started = time.monotonic()
        reply = request("POST", f"{self.url}/v1/chat/completions",
                        json.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}]}),
                        {"Authorization": f"Bearer {self.keys[key]}", "Content-Type": "application/json"})
        return reply, time.monotonic() - started

    def api(self, method: str, path: str, key: str = "owner") -> tuple[Reply, float]:
        started = time.monotonic()
        reply = request(method, f"{self.url}{path}", headers={"Authorization": f"Bearer {self.keys[key]}"})
        return reply, time.monotonic() - started

    def socket_refusal(self, key: str) -> tuple[dict, int | None]:
        """The first frame and the close code of a chat WebSocket opened with this key."""
        with connect_sync(self.gateway.ws, open_timeout=5,
                          additional_headers={"Authorization": f"Bearer {self.keys[key]}"}) as socket:
            frame = json.loads(socket.recv(timeout=5))
            try:
                socket.recv(timeout=5)
            except ConnectionClosed as closed:
                return frame, closed.rcvd.code if closed.rcvd else None
        return frame, None

    def held_socket(self, key: str):
        """A chat WebSocket opened (and its key checked) now, to watch what happens to it later."""
        return connect_sync(self.gateway.ws, open_timeout=5,
                            additional_headers={"Authorization": f"Bearer {self.keys[key]}"})

    def until_chat_works(self, key: str = "owner", model: str = "warm-model", timeout: float = 15.0) -> Reply:
        deadline = time.monotonic() + timeout
        while True:
            reply, _ = self.chat(key, model)
            if reply.status == 200 or time.monotonic() > deadline:
                return reply
            time.sleep(0.2)

    def metered_requests(self, block_id: str) -> int:
        with psycopg.connect(self.postgres.url.replace("postgres://", "postgresql://"), connect_timeout=2) as conn:
            row = conn.execute("SELECT coalesce(sum(m.requests), 0) FROM inference_blockmetricbucket m "
                               "JOIN registry_block b ON b.id = m.block_id WHERE b.block_id = %s",
                               (block_id,)).fetchone()
        return int(row[0])


def _settings(own_redis: PrivateRedis) -> dict[str, str]:
    """What the gateway under test (and manage.py beside it) runs with, over production's settings."""
    return {"REDIS_URL": own_redis.url, "CELERY_BROKER_URL": "memory://", "DB_OUTAGE_GRACE_S": str(GRACE_S),
            "DB_LOOKUP_TIMEOUT_S": str(LOOKUP_TIMEOUT_S)}


def _manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    upstream = FakeUpstream().start()
    own_redis = PrivateRedis().start()
    postgres = PrivatePostgres().init()
    gateway = None
    try:
        env = gateway_env(postgres.url, **_settings(own_redis))
        _manage(env, "migrate", "-v0")
        keys = json.loads(_manage(env, "shell", "-c",
                                  f"UPSTREAM = {upstream.base_url('ok')!r}\n{SEED}").strip().splitlines()[-1])
        gateway = start_gateway(postgres.url, **_settings(own_redis))
        yield Stack(url=gateway.url, redis=own_redis, postgres=postgres, keys=keys, gateway=gateway)
    finally:
        if gateway is not None:
            gateway.stop()
        own_redis.stop()
        postgres.destroy()
        upstream.stop()


def _assert_unavailable(reply: Reply, elapsed: float, code: str, *, envelope: bool = False,
                        within: float = FAST_S) -> None:
    assert reply.status == 503, (reply.status, reply.body[:500])
    assert reply.headers["content-type"].startswith("application/json")
    assert int(reply.headers["retry-after"]) > 0
    body = reply.json()
    if envelope:
        assert body["success"] is False and body["code"] == code and body["message"]
    else:
        assert body["error"]["code"] == code and body["error"]["type"] == "server_error"
    assert elapsed < within, f"a degraded answer took {elapsed:.2f} s"


def test_with_redis_killed_a_chat_is_a_quick_503_redis_unavailable_and_works_again_once_redis_is_back(stack):
    assert stack.chat("owner")[0].status == 200
    stack.redis.stop()
    try:
        for _ in range(3):
            _assert_unavailable(*stack.chat("owner"), "redis_unavailable")
        _assert_unavailable(*stack.chat("member"), "redis_unavailable")
        # With no quota, the rules version (read from Redis every RULES_POLL_S) fails closed as well.
        time.sleep(RULES_POLL_S)
        _assert_unavailable(*stack.chat("outsider", "globex-model"), "redis_unavailable")
        # ... and acme's private model stays a 404 for it, exactly as when Redis is up.
        assert stack.chat("outsider")[0].status == 404
        # The REST API's quota view needs Redis too: the envelope's 503.
        _assert_unavailable(*stack.api("GET", "/api/usage"), "redis_unavailable", envelope=True)
        # What needs only PostgreSQL still works.
        assert stack.api("GET", "/api/blocks")[0].status == 200
    finally:
        stack.redis.start()
    assert stack.until_chat_works().status == 200  # the same process: no restart
    assert stack.api("GET", "/api/usage")[0].status == 200


def test_with_postgres_stopped_warm_keys_and_blocks_are_served_for_the_grace_and_the_rest_is_a_quick_503(stack):
    for key in ("owner", "member"):
        assert stack.chat(key)[0].status == 200
    # The outsider's key is warm too, and so is its lookup of acme's private block: a 404.
    assert stack.chat("outsider")[0].status == 404
    served_before = stack.metered_requests("warm-model")
    held = stack.held_socket("owner")

    stack.postgres.stop()
    stopped = time.monotonic()
    served = 0
    try:
        # A rules change announced just before: the gateway cannot reload them, and keeps its snapshot.
        with redis.Redis.from_url(stack.redis.url) as client:
            client.incr(VERSION_KEY)
        time.sleep(RULES_POLL_S)
        # Within the grace: the warm key and block answer as before, fast, beyond their 2 s lifetime.
        while time.monotonic() - stopped < CACHE_TTL_S + 0.5:
            for key in ("owner", "member"):
                reply, elapsed = stack.chat(key)
                assert reply.status == 200, reply.body[:500]
                assert elapsed < FAST_S
                served += 1
            time.sleep(0.25)
        # Stale serving never widens access: the outsider's cached refusal stays a refusal.
        assert stack.chat("outsider")[0].status in (404, 503)
        # Cold: a key never seen, a block never asked for, the REST API, the health check.
        _assert_unavailable(*stack.chat("cold"), "database_unavailable")
        _assert_unavailable(*stack.chat("owner", "cold-model"), "database_unavailable")
        _assert_unavailable(*stack.api("GET", "/api/blocks"), "database_unavailable", envelope=True)
        _assert_unavailable(*stack.api("GET", "/healthz"), "database_unavailable", envelope=True)
        # A chat socket opened with a cold key is told why and closed with "try again later", not crashed.
        frame, close_code = stack.socket_refusal("cold")
        assert (frame["type"], frame["status"], frame["error"]["code"]) == ("error", 503, "database_unavailable")
        assert close_code == 1013
        # Past the grace, the warm entries are refused too: the outage window is bounded.
        time.sleep(max(0.0, stopped + CACHE_TTL_S + GRACE_S + 0.2 - time.monotonic()))
        _assert_unavailable(*stack.chat("owner"), "database_unavailable")
        # An open chat socket is bounded the same way: told, then closed with "try again later".
        frames = []
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                frames.append(json.loads(held.recv(timeout=5)))
        assert frames and frames[-1]["error"]["code"] == "database_unavailable"
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013
    finally:
        held.close()
        stack.postgres.start()

    # The same gateway process reconnects by itself.
    assert stack.until_chat_works().status == 200
    assert stack.until_chat_works("cold", "cold-model").status == 200
    assert stack.api("GET", "/api/blocks")[0].status == 200
    assert stack.api("GET", "/healthz")[0].status == 200
    assert stack.gateway.process.poll() is None
    # The metrics of the requests served during the outage were kept and written once it was over.
    deadline = time.monotonic() + 10
    while stack.metered_requests("warm-model") < served_before + served + 1 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert stack.metered_requests("warm-model") >= served_before + served + 1


def test_with_redis_frozen_a_chat_is_a_503_within_the_socket_timeout_and_works_again_once_redis_answers(stack):
    assert stack.chat("owner")[0].status == 200
    stack.redis.freeze()
    try:
        _assert_unavailable(*stack.chat("owner"), "redis_unavailable", within=REDIS_SOCKET_TIMEOUT_S + 1)
    finally:
        stack.redis.thaw()
    assert stack.until_chat_works().status == 200


def test_with_postgres_frozen_warm_keys_and_blocks_are_still_served_and_cold_ones_are_a_503_without_a_hang(stack):
    assert stack.chat("owner")[0].status == 200
    stack.postgres.freeze()
    frozen = time.monotonic()
    try:
        # Past the entries' lifetime: one request waits DB_LOOKUP_TIMEOUT_S for the reload at most,
        # then the database counts as down and the warm entries are served at once.
        while time.monotonic() - frozen < CACHE_TTL_S + 1:
            reply, elapsed = stack.chat("owner")
            assert reply.status == 200, reply.body[:500]
            assert elapsed < LOOKUP_TIMEOUT_S + FAST_S
            time.sleep(0.25)
        _assert_unavailable(*stack.chat("cold"), "database_unavailable", within=LOOKUP_TIMEOUT_S + FAST_S)
        _assert_unavailable(*stack.chat("owner", "cold-model"), "database_unavailable",
                            within=LOOKUP_TIMEOUT_S + FAST_S)
    finally:
        stack.postgres.thaw()
    assert stack.until_chat_works("cold", "cold-model").status == 200
    assert stack.api("GET", "/api/blocks")[0].status == 200
