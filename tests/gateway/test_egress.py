"""Egress control (issue 8, item 2): a tenant's backend config cannot make the server reach its own network.

Every refused target is a RecordingListener on a loopback address: the assertions are that it received
nothing. The suite's operator opens 127.0.0.1 for the fake upstreams (tests/conftest.py); the tests of
the default policy narrow EGRESS_ALLOW back to empty, as shipped. Nothing here sends a packet to a
non-loopback address: those targets must be refused before any connection is tried.
"""

from __future__ import annotations

import asyncio
import json

import orjson
import pytest
from asgiref.sync import sync_to_async
from channels.testing import HttpCommunicator
from django.conf import settings as django_settings
from django.db import connections
from rest_framework.test import APIClient

from inference.backends.aios_grpc import AIOSBackend
from inference.backends.openai_compat import OpenAIBackend
from inference.backends.queued.backend import QueuedBackend
from inference.backends.queued.queues import CPU_QUEUE
from registry.models import Block, Membership
from registry.services import api_key_create
from registry.tenancy.models import PolicyRule
from tests.factories import BlockFactory
from tests.support.plain_http import request
from tests.support.recording_listener import RecordingListener
from webapp.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)

HI = [{"role": "user", "content": "hi"}]


@pytest.fixture(autouse=True)
async def _close_orm_thread_connections():
    yield
    # The gateway's lookups ran in this loop's default executor and the async ORM in asgiref's shared
    # thread: close their connections so the test database can be dropped.
    await asyncio.get_running_loop().run_in_executor(None, connections.close_all)
    await sync_to_async(connections.close_all)()


@pytest.fixture
def default_policy(settings):
    """EGRESS_ALLOW as shipped: nothing opened, public addresses only."""
    settings.EGRESS_ALLOW = []


@pytest.fixture
def listeners():
    """A recording listener on 127.0.0.1 (the one address the suite opens) and one on 127.0.0.2."""
    with RecordingListener("127.0.0.1") as first, RecordingListener("127.0.0.2") as second:
        yield first, second


def openai_block(block_id: str, base_url: str, **config) -> dict:
    return {"id": block_id, "kind": "llm", "backend": {"type": "openai", "config": {"base_url": base_url, **config}}}


def grpc_block(block_id: str, target: str, **config) -> dict:
    return {"id": block_id, "kind": "llm", "backend": {"type": "aios_grpc", "config": {"target": target, **config}}}


def assert_refused(response, *words: str) -> str:
    assert response.status_code == 400, response.content
    payload = response.json()
    assert payload["success"] is False
    for word in words:
        assert word in payload["message"], payload["message"]
    return payload["message"]


async def chat(key: str, model: str, *, stream: bool = False) -> dict:
    body = {"model": model, "messages": HI, "stream": stream}
    communicator = HttpCommunicator(application, "POST", "/v1/chat/completions", body=orjson.dumps(body),
                                    headers=[(b"authorization", f"Bearer {key}".encode()),
                                             (b"content-type", b"application/json")])
    response = await communicator.get_response(timeout=20)
    response["json"] = json.loads(response["body"]) if response["body"].startswith(b"{") else None
    return response


# --- registration: a literal refused address is a 400, and nothing is connected to -----------------

LITERAL_INTERNAL_URLS = [
    "http://127.0.0.1:6379", "http://127.0.0.1:5432/v1", "http://127.0.0.2:8000/v1", "http://[::1]:8000/v1",
    "http://[::ffff:127.0.0.1]:8000/v1", "http://127.1:6379", "http://2130706433:8000", "http://0x7f.1/v1",
    "http://0.0.0.0:8000/v1", "http://169.254.169.254/latest/meta-data", "http://10.0.0.5/v1",
    "http://192.168.1.1/v1", "http://172.16.0.1/v1", "http://100.64.0.1/v1", "http://224.0.0.1/v1",
    "http://[fe80::1]/v1", "http://[fd00::1]/v1",
]


@pytest.mark.parametrize("base_url", LITERAL_INTERNAL_URLS)
def test_a_block_on_a_literal_internal_address_is_refused_at_registration(owner, default_policy, base_url):
    assert_refused(owner.client().post("/api/blocks", openai_block("ssrf", base_url), format="json"),
                   "backend.config.base_url", "not a public address")
    assert not Block.objects.exists()


@pytest.mark.parametrize("target", ["127.0.0.1:6379", "[::1]:50051", "169.254.169.254:80", "10.1.2.3:50051",
                                    "127.1:50051"])
def test_a_grpc_block_on_a_literal_internal_address_is_refused_at_registration(owner, default_policy, target):
    assert_refused(owner.client().post("/api/blocks", grpc_block("ssrf", target), format="json"),
                   "backend.config.target")
    assert not Block.objects.exists()


@pytest.mark.parametrize("backend", [
    {"type": "openai", "config": {"base_url": "file:///etc/passwd"}},
    {"type": "openai", "config": {"base_url": "gopher://example.com:6379/_INFO"}},
    {"type": "openai", "config": {"base_url": "http://"}},
    {"type": "openai", "config": {"base_url": 5}},
    {"type": "aios_grpc", "config": {"target": "unix:/var/run/docker.sock"}},
    {"type": "aios_grpc", "config": {"target": "dns:///localhost:50051"}},
    {"type": "orgllm_grpc", "config": {"target": "ipv4:127.0.0.1:50051"}},
], ids=["file", "gopher", "no-host", "not-a-string", "unix-socket", "dns-scheme", "ipv4-scheme"])
def test_a_destination_that_is_not_a_plain_http_url_or_host_port_is_refused(owner, backend):
    assert_refused(owner.client().post("/api/blocks", {"id": "odd", "backend": backend}, format="json"),
                   "backend.config.")


def test_literal_internal_addresses_are_refused_for_members_and_other_organizations_too(
        owner, member, outsider, default_policy, listeners):
    for party in (member, outsider):
        response = party.client().post("/api/blocks", openai_block("ssrf", f"{listeners[0].url}/v1"), format="json")
        # 400 here; 403 once block writes are owner-only (issue 8, item 4): refused either way.
        assert response.status_code in (400, 403) and response.json()["success"] is False
    BlockFactory(organization=owner.organization, block_id="fine", backend_type="openai",
                 backend_config={"base_url": "https://api.example.com/v1"})
    patched = owner.client().patch("/api/blocks/fine", {"backend": {"type": "openai", "config": {
        "base_url": f"{listeners[1].url}/v1"}}}, format="json")
    assert_refused(patched, "not a public address")
    assert Block.objects.get(block_id="fine").backend_config["base_url"] == "https://api.example.com/v1"
    listeners[0].wait_quiet(0.1)
    assert listeners[0].connections == [] and listeners[1].connections == []


def test_a_public_address_or_a_host_name_is_accepted_at_registration(owner, default_policy):
    for block_id, url in (("public-ip", "http://8.8.8.8/v1"), ("by-name", "https://api.openai.com/v1"),
                          ("localhost-name", "http://localhost:8000/v1")):  # a name is checked when connected to
        assert owner.client().post("/api/blocks", openai_block(block_id, url), format="json").status_code == 201


def test_only_the_operator_may_mark_a_block_internal(owner, member, outsider, operator, default_policy):
    body = openai_block("engine", "http://127.0.0.2:30000/v1", internal=True)
    assert member.client().post("/api/blocks", body, format="json").status_code == 403  # members write no blocks
    for party in (owner, outsider):
        assert_refused(party.client().post("/api/blocks", body, format="json"), "internal")
    assert_refused(owner.client().post("/api/blocks", openai_block("flag", "https://x.example/v1", internal="yes"),
                                       format="json"), "internal")
    assert operator.client().post("/api/blocks", body, format="json").status_code == 201
    # The operator, too, opens an internal address only by saying so.
    assert_refused(operator.client().post("/api/blocks", openai_block("unflagged", "http://127.0.0.2:1/v1"),
                                          format="json"), "not a public address")


def test_a_key_a_superuser_made_for_a_tenant_organization_carries_no_operator_power(org, default_policy,
                                                                                     django_user_model):
    # The admin records the superuser who made a key as its creator; the key still acts for the tenant.
    root = django_user_model.objects.create_superuser("root", "root@example.com", "pw-root")
    Membership.objects.create(user=root, organization=org, role=Membership.OWNER)
    _, raw = api_key_create(organization=org, name="made-in-admin", created_by=root)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    body = openai_block("engine", "http://127.0.0.2:30000/v1", internal=True)
    assert_refused(client.post("/api/blocks", body, format="json"), "internal")
    assert not Block.objects.filter(block_id="engine").exists()


def test_the_operator_opens_address_ranges_and_host_names_with_egress_allow(owner, settings):
    settings.EGRESS_ALLOW = ["10.0.0.0/8", "llm.internal"]
    assert owner.client().post("/api/blocks", openai_block("corp", "http://10.1.2.3:8000/v1"),
                               format="json").status_code == 201
    assert_refused(owner.client().post("/api/blocks", openai_block("meta", "http://169.254.169.254/"),
                                       format="json"), "not a public address")


# --- headers: an allowlist, no CR/LF -------------------------------------------------------------

@pytest.mark.parametrize("headers", [
    {"Host": "redis.internal"},
    {"X-Forwarded-For": "127.0.0.1"},
    {"Forwarded": "for=127.0.0.1"},
    {"X-Real-IP": "10.0.0.1"},
    {"Connection": "close"},
    {"Transfer-Encoding": "chunked"},
    {"X-Switchboard-Hops": "0"},
    {"X-Api-Key": "k\r\nHost: evil"},
    {"X-Api-Key": "k\nX-Injected: 1"},
    {"X-Api-Key": "k\x00"},
    {"X-Api-Key": 5},
    {"Bad Name": "x"},
    "Authorization: x",
], ids=["host", "x-forwarded-for", "forwarded", "x-real-ip", "connection", "transfer-encoding", "ours",
        "crlf", "lf", "nul", "not-a-string", "bad-name", "not-an-object"])
def test_config_headers_outside_the_allowlist_or_with_line_breaks_are_a_400(owner, headers):
    assert_refused(owner.client().post("/api/blocks", openai_block("h", "https://api.example.com/v1", headers=headers),
                                       format="json"), "backend.config.headers")
    assert not Block.objects.exists()


async def test_allowed_config_headers_are_stored_and_sent(owner, listeners):
    headers = {"OpenAI-Organization": "org-1", "X-Api-Key": "k-1", "anthropic-version": "2023-06-01"}
    response = await sync_to_async(owner.client().post)("/api/blocks",
                                       openai_block("h", f"{listeners[0].url}/v1", headers=headers), format="json")
    assert response.status_code == 201
    assert (await Block.objects.aget(block_id="h")).backend_config["headers"] == headers
    await chat(owner.key, "h")
    assert b"OpenAI-Organization: org-1" in listeners[0].received and b"X-Api-Key: k-1" in listeners[0].received


async def test_a_stored_block_with_a_line_break_in_a_header_is_a_502_not_a_500(owner, listeners):
    await Block.objects.acreate(organization=owner.organization, block_id="legacy-crlf", kind=Block.LLM,
                                backend_type="openai", backend_config={
                                    "base_url": f"{listeners[0].url}/v1", "headers": {"X-Api-Key": "a\r\nHost: x"}})
    response = await chat(owner.key, "legacy-crlf")
    assert response["status"] == 502 and response["json"]["error"]["code"] == "backend_misconfigured"
    assert listeners[0].connections == []


# --- connect time: a name resolving to a refused address is a 502 egress_denied, no byte sent ---------

@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_a_host_name_that_resolves_to_loopback_is_a_502_egress_denied_and_nothing_is_sent(
        owner, default_policy, listeners, stream):
    created = await sync_to_async(owner.client().post)("/api/blocks",
                                      openai_block("by-name", f"http://localhost:{listeners[0].port}/v1"),
                                      format="json")
    assert created.status_code == 201
    response = await chat(owner.key, "by-name", stream=stream)
    assert response["status"] == 502, response["body"]
    error = response["json"]["error"]
    assert error["code"] == "egress_denied" and "localhost" in error["message"]
    await asyncio.to_thread(listeners[0].wait_quiet)
    assert listeners[0].connections == []


async def test_a_stored_block_on_a_literal_internal_address_is_refused_at_call_time(owner, listeners):
    # Rows written before these rules (or by hand) are checked when used, not only when written.
    # 127.0.0.1 is the suite's opened address; 127.0.0.2 and the others stay refused.
    for block_id, url in (("legacy-loop2", f"{listeners[1].url}/v1"), ("legacy-meta", "http://169.254.169.254/v1"),
                          ("legacy-ten", "http://10.255.255.1/v1"), ("legacy-v6", "http://[::1]:9/v1"),
                          ("legacy-short", f"http://127.2:{listeners[1].port}/v1")):
        await Block.objects.acreate(organization=owner.organization, block_id=block_id, kind=Block.LLM,
                                    backend_type="openai", backend_config={"base_url": url})
        response = await chat(owner.key, block_id)
        assert response["status"] == 502 and response["json"]["error"]["code"] == "egress_denied", block_id
    await asyncio.to_thread(listeners[1].wait_quiet)
    assert listeners[1].connections == []


async def test_the_listener_does_record_a_connection_to_an_opened_address(owner, listeners):
    """The control for the tests above: the same request to an address the operator opened arrives."""
    await Block.objects.acreate(organization=owner.organization, block_id="opened", kind=Block.LLM,
                                backend_type="openai", backend_config={"base_url": f"{listeners[0].url}/v1"})
    response = await chat(owner.key, "opened")
    assert response["status"] == 502 and response["json"]["error"]["code"] == "upstream_unreachable"
    assert len(listeners[0].connections) >= 1
    assert b"POST /v1/chat/completions" in listeners[0].received
    assert b"X-Switchboard-Hops: 1" in listeners[0].received


async def test_what_an_internal_service_answers_does_not_come_back_in_the_error(owner, settings):
    page = b"redis_version:7.2 requirepass hunter2\n"
    reply = b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (
        len(page), page)
    # The operator opened this address (as for an internal upstream); a tenant block points at it anyway.
    with RecordingListener("127.0.0.1", reply=reply) as service:
        await Block.objects.acreate(organization=owner.organization, block_id="nosy", kind=Block.LLM,
                                    backend_type="openai", backend_config={"base_url": f"{service.url}/v1"})
        response = await chat(owner.key, "nosy")
    assert response["status"] == 502 and len(service.connections) == 1
    assert b"hunter2" not in response["body"] and b"redis_version" not in response["body"]
    assert "not an API error" in response["json"]["error"]["message"]


async def test_a_grpc_target_by_name_or_literal_internal_address_is_refused_before_connecting(
        owner, default_policy, listeners):
    for block_id, target in (("grpc-name", f"localhost:{listeners[0].port}"),
                             ("grpc-literal", f"127.0.0.2:{listeners[1].port}")):
        await Block.objects.acreate(organization=owner.organization, block_id=block_id, kind=Block.LLM,
                                    backend_type="aios_grpc", backend_config={"target": target, "timeout_s": 2})
        response = await chat(owner.key, block_id)
        assert response["status"] == 502 and response["json"]["error"]["code"] == "egress_denied", block_id
    ok, details = AIOSBackend.from_config({"target": f"localhost:{listeners[0].port}"}).check_execute({})
    assert ok is False and details["status"] == "egress_denied"
    await asyncio.to_thread(listeners[0].wait_quiet)
    assert listeners[0].connections == [] and listeners[1].connections == []


async def test_an_internal_block_reaches_its_internal_upstream(owner, default_policy, fake_upstream):
    await Block.objects.acreate(organization=owner.organization, block_id="internal", kind=Block.LLM,
                                backend_type="openai",
                                backend_config={"base_url": fake_upstream.base_url(), "internal": True})
    response = await chat(owner.key, "internal")
    assert response["status"] == 200, response["body"]


def test_the_health_probe_of_a_refused_destination_sends_nothing(default_policy, listeners):
    ok, details = OpenAIBackend.from_config({"base_url": f"http://localhost:{listeners[0].port}/v1"}).check_execute({})
    assert ok is False and details["code"] == "egress_denied"
    listeners[0].wait_quiet(0.1)
    assert listeners[0].connections == []


# --- queue names are the operator's -------------------------------------------------------------

def test_a_tenant_cannot_choose_a_queue(owner, member, outsider, operator):
    body = openai_block("q", "https://api.example.com/v1", dispatch="queued", queue="inference.gpu.globex-node")
    assert member.client().post("/api/blocks", body, format="json").status_code == 403  # members write no blocks
    for party in (owner, outsider):
        assert_refused(party.client().post("/api/blocks", body, format="json"), "queue")
    assert operator.client().post("/api/blocks", body, format="json").status_code == 201


async def test_a_tenants_queued_block_goes_to_the_default_queue_for_its_kind(owner):
    created = await sync_to_async(owner.client().post)("/api/blocks",
                                      openai_block("q", "https://api.example.com/v1", dispatch="queued"), format="json")
    assert created.status_code == 201
    block = await Block.objects.aget(block_id="q")
    backend = QueuedBackend.for_block(block.block_id, block.backend_type, block.backend_config)
    assert await backend.queue_for() == CPU_QUEUE


# --- loops: a block pointing at the gateway cannot amplify ----------------------------------------

def test_a_block_pointing_at_the_gateway_itself_makes_a_bounded_number_of_hops(live_gateway, owner):
    port = int(live_gateway.url.rsplit(":", 1)[1])
    with RecordingListener("127.0.0.1", relay_to=("127.0.0.1", port)) as relay:
        block = BlockFactory(organization=owner.organization, block_id="mirror", backend_type="openai",
                             kind=Block.LLM, backend_config={"base_url": f"{relay.url}/v1", "api_key": owner.key})
        # Retries on exactly these statuses would multiply the loop if a loop were retried.
        PolicyRule.objects.create(organization=owner.organization, block=block, retries=3, backoff_s=0,
                                  retry_on=[502, 508])
        reply = request("POST", f"{live_gateway.v1}/chat/completions", json.dumps({"model": "mirror", "messages": HI}),
                        {"Authorization": f"Bearer {owner.key}", "Content-Type": "application/json"}, timeout=30)
        relay.wait_quiet()
        sent = relay.received
    assert reply.status == 508, reply.body
    assert reply.json()["error"]["code"] == "loop_detected"
    hops = django_settings.GATEWAY_MAX_HOPS
    assert sent.count(b"POST /v1/chat/completions") == hops + 1
    for n in range(1, hops + 2):
        assert f"X-Switchboard-Hops: {n}".encode() in sent


@pytest.mark.parametrize(("value", "status"), [("2", 200), ("3", 508), ("99999999", 508), ("nonsense", 200)])
def test_the_gateway_refuses_a_request_that_went_through_it_too_often(live_gateway, owner, upstream_block,
                                                                      value, status):
    upstream_block(owner.organization, block_id="acme-ok")
    reply = request("POST", f"{live_gateway.v1}/chat/completions", json.dumps({"model": "acme-ok", "messages": HI}),
                    {"Authorization": f"Bearer {owner.key}", "Content-Type": "application/json",
                     "X-Switchboard-Hops": value})
    assert reply.status == status, reply.body
    if status == 508:
        assert reply.json()["error"]["code"] == "loop_detected"
