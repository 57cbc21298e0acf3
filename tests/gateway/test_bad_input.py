"""Bad input over real uvicorn: /v1 answers in OpenAI's shape, /api in the envelope, the WebSocket
with an error frame; never a 500, an HTML page or a dropped connection."""

from __future__ import annotations

import asyncio
import http.client
import json

import pytest

from registry.models import Block
from tests.support.openai_errors import assert_openai_error
from tests.support.plain_http import request
from tests.support.websocket_client import connect

pytestmark = pytest.mark.django_db(transaction=True)

HI = [{"role": "user", "content": "hi"}]
DEEP = b"[" * 100_000 + b"]" * 100_000


def post(gateway, party, raw: bytes, path: str = "/v1/chat/completions"):
    return request("POST", gateway.url + path, raw,
                   {"Authorization": f"Bearer {party.key}", "Content-Type": "application/json"})


def chunked(gateway, party, path: str, size: int) -> tuple[int, dict[str, str], bytes]:
    """POST a body of `size` bytes with Transfer-Encoding: chunked (no Content-Length to refuse it by)."""
    host, port = gateway.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    chunk = b"x" * (256 * 1024)

    def body():
        yield b'{"model": "acme-ok", "pad": "'
        for _ in range(size // len(chunk)):
            yield chunk
        yield b'"}'

    try:
        conn.request("POST", path, body=body(), encode_chunked=True,
                     headers={"Authorization": f"Bearer {party.key}", "Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    except (BrokenPipeError, ConnectionResetError):
        pytest.fail("the server dropped the connection instead of answering 413")
    finally:
        conn.close()


def assert_envelope(reply, status: int) -> None:
    assert reply.status == status, reply.body[:300]
    assert reply.headers["content-type"].startswith("application/json")
    body = reply.json()
    assert body["success"] is False and body["message"]


@pytest.fixture
def acme_block(owner, upstream_block) -> Block:
    return upstream_block(owner.organization, block_id="acme-ok")


# The findings of issue 8.

def test_a_nul_in_a_chat_model_is_a_400_not_a_500(live_gateway, owner, acme_block):
    reply = post(live_gateway, owner, json.dumps({"model": "acme-ok\u0000", "messages": HI}).encode())
    assert_openai_error(reply, 400, param="model")
    assert_openai_error(request("GET", live_gateway.v1 + "/models/acme%00ok",
                                headers={"Authorization": f"Bearer {owner.key}"}), 400, param="model")


def test_json_nested_100000_deep_is_a_400_on_chat_completions(live_gateway, owner, acme_block):
    assert_openai_error(post(live_gateway, owner, DEEP), 400, "invalid_json")
    # Deep enough to pass orjson's own limit and still break the way upstream (orjson.dumps stops at 255).
    deep_extra = b'{"model": "acme-ok", "messages": [{"role": "user", "content": "hi"}], "x": ' \
                 + b"[" * 500 + b"]" * 500 + b"}"
    assert_openai_error(post(live_gateway, owner, deep_extra), 400, "invalid_json")


def test_a_50_mb_body_to_blocks_is_a_413_envelope_over_uvicorn_too(live_gateway, owner):
    before = Block.objects.count()
    huge = b'{"id": "big", "name": "' + b"x" * (50 * 1024 * 1024) + b'"}'
    assert_envelope(post(live_gateway, owner, huge, "/api/blocks"), 413)
    status, headers, body = chunked(live_gateway, owner, "/api/blocks", 4 * 1024 * 1024)
    assert status == 413 and json.loads(body)["success"] is False, body[:200]
    assert Block.objects.count() == before


def test_a_chunked_api_body_under_the_cap_is_read_and_parsed(live_gateway, owner):
    # The ASGI guard counts a chunked body as it arrives, then hands Django every byte it read.
    host, port = live_gateway.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    pieces = [b'{"id": "chunked-ok", ', b'"name": "' + b"n" * 150 + b'", ', b'"visibility": "private"}']
    try:
        conn.request("POST", "/api/blocks", body=iter(pieces), encode_chunked=True,
                     headers={"Authorization": f"Bearer {owner.key}", "Content-Type": "application/json"})
        resp = conn.getresponse()
        status, body = resp.status, resp.read()
    finally:
        conn.close()
    assert status == 201, body[:300]
    assert Block.objects.get(block_id="chunked-ok").name == "n" * 150


# /v1 in OpenAI's shape.

def test_chat_completions_refuses_invalid_utf8_and_lone_surrogates_with_400(live_gateway, owner, acme_block):
    for raw in (b'{"model": "acme-ok", "messages": [{"role": "user", "content": "\xff"}]}',
                b'{"model": "acme-ok", "messages": [{"role": "user", "content": "\\ud800"}]}'):
        assert_openai_error(post(live_gateway, owner, raw), 400, "invalid_json")


def test_a_chunked_chat_body_over_the_cap_is_a_413_while_it_arrives(live_gateway, owner, acme_block):
    status, headers, body = chunked(live_gateway, owner, "/v1/chat/completions", 9 * 1024 * 1024)
    assert status == 413, body[:200]
    assert json.loads(body)["error"]["code"] == "request_too_large"


def test_a_nul_in_message_content_still_goes_upstream(live_gateway, owner, acme_block):
    body = {"model": "acme-ok", "messages": [{"role": "user", "content": "a\u0000b"}]}
    reply = post(live_gateway, owner, json.dumps(body).encode())
    assert reply.status == 200, reply.body[:200]
    assert reply.json()["choices"][0]["message"]["content"]


def test_queued_request_endpoints_answer_a_nul_id_with_an_openai_404(live_gateway, owner):
    headers = {"Authorization": f"Bearer {owner.key}"}
    assert_openai_error(request("GET", live_gateway.v1 + "/requests/a%00b/stream", headers=headers), 404)
    assert_openai_error(request("POST", live_gateway.v1 + "/requests/a%00b/cancel", b"", headers), 404)


def test_another_organizations_key_with_bad_input_gets_the_same_openai_400(live_gateway, outsider, member,
                                                                           acme_block):
    for party in (outsider, member):
        assert_openai_error(post(live_gateway, party, DEEP), 400)
        reply = post(live_gateway, party, json.dumps({"model": "acme-ok\u0000", "messages": HI}).encode())
        assert_openai_error(reply, 400, param="model")


# /api over uvicorn: what Django's ASGI handler would otherwise answer itself.

async def test_an_api_query_string_that_is_not_utf8_is_a_400_envelope(owner):
    # uvicorn's httptools parser refuses a raw non-ASCII byte itself; other servers (h11, daphne)
    # hand it to the application, where Django's ASGIRequest would answer an empty HTML 400.
    from webapp.asgi import application

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
             "path": "/api/blocks", "raw_path": b"/api/blocks", "query_string": b"kind=\xff", "root_path": "",
             "headers": [(b"host", b"127.0.0.1"), (b"authorization", f"Bearer {owner.key}".encode())],
             "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 80)}
    sent: list[dict] = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    await application(scope, receive, send)
    assert sent[0]["status"] == 400
    assert dict(sent[0]["headers"])[b"content-type"] == b"application/json"
    assert json.loads(sent[1]["body"])["success"] is False


def test_api_nul_in_a_path_or_query_value_is_a_400_envelope_over_uvicorn(live_gateway, owner):
    headers = {"Authorization": f"Bearer {owner.key}"}
    assert_envelope(request("GET", live_gateway.url + "/api/engines?block=a%00b", headers=headers), 400)
    assert_envelope(request("GET", live_gateway.url + "/api/blocks/a%00b", headers=headers), 400)
    assert_envelope(request("GET", live_gateway.url + "/api/no-such-thing", headers=headers), 404)


# The WebSocket chat: an error frame, and the socket keeps serving.

async def test_bad_websocket_frames_get_error_frames_and_the_socket_keeps_serving(live_gateway, owner, acme_block):
    async with connect(f"{live_gateway.ws}?api_key={owner.key}&x=%FF") as ws:
        await ws.send(DEEP.decode())
        await ws.send("[" * 500 + "]" * 500)
        await ws.send(b"\xff\xfe")
        await ws.send(json.dumps({"id": "nul", "model": "acme-ok\u0000", "messages": HI}))
        await ws.send(json.dumps({"id": "ok", "model": "acme-ok", "messages": HI}))
        frames = []
        async with asyncio.timeout(10):
            while not frames or frames[-1].get("id") != "ok" or frames[-1]["type"] not in ("done", "error"):
                frames.append(json.loads(await ws.recv()))
    errors = [f for f in frames if f["type"] == "error"]
    assert [f["status"] for f in errors] == [400, 400, 400, 400], errors
    assert errors[-1]["id"] == "nul" and errors[-1]["error"]["param"] == "model"
    assert frames[-1]["type"] == "done"
