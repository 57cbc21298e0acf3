"""/v1/requests/<id>/stream (resume with Last-Event-ID) and /v1/requests/<id>/cancel."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from channels.testing import HttpCommunicator

from inference.backends.queued import streams
from tests.support.live_server import start_fake_engine, wait_for
from tests.support.queued_requests import engine_chat, expected, queued_block
from tests.support.sse import sse_events, text_of
from webapp.asgi import application

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


async def call(method: str, path: str, key: str | None = None, **headers: str) -> dict:
    head = [(name.replace("_", "-").encode(), value.encode()) for name, value in headers.items()]
    if key:
        head.append((b"authorization", f"Bearer {key}".encode()))
    communicator = HttpCommunicator(application, method, path, headers=head)
    return await communicator.get_response(timeout=30)


async def submit(backend, org, max_tokens: int) -> str:
    return await backend.submit(engine_chat(org, max_tokens=max_tokens))


async def test_a_client_resumes_with_last_event_id_without_losing_or_repeating_tokens(owner, cpu_worker):
    engine = start_fake_engine(token_delay_ms=10, tokens=60)
    try:
        block = await asyncio.to_thread(queued_block, engine.url, owner.organization)
        from inference.backends.factory import backend_for_block

        stream = backend_for_block(block).stream_chat(engine_chat(owner.organization, max_tokens=60))
        first_part, last_event = [], None
        async for delta in stream:
            first_part.append(delta.content)
            last_event = delta.event_id
            if len(first_part) == 3:
                break
        await stream.aclose()  # the client drops; the grace period keeps the request running
        request_id = last_event.split(":")[0]

        response = await call("GET", f"/v1/requests/{request_id}/stream", owner.key, last_event_id=last_event)
        assert response["status"] == 200
        events = sse_events(response["body"])
        assert events[-1] == (None, "[DONE]")
        assert all(event_id and event_id.startswith(request_id + ":") for event_id, _ in events[:-1])
        assert "".join(first_part) + text_of(events) == expected(0, 60)
        assert events[-2][1]["choices"][0]["finish_reason"] == "length"
        assert engine.stats()["aborted"] == 0

        # From the start, the whole answer again; a second reader does not disturb the first.
        again = sse_events((await call("GET", f"/v1/requests/{request_id}/stream", owner.key))["body"])
        assert text_of(again) == expected(0, 60)
    finally:
        engine.stop()


async def test_the_cancel_endpoint_stops_the_request_on_the_engine(owner, cpu_worker):
    engine = start_fake_engine(token_delay_ms=20, tokens=500)
    try:
        block = await asyncio.to_thread(queued_block, engine.url, owner.organization)
        from inference.backends.factory import backend_for_block

        request_id = await submit(backend_for_block(block), owner.organization, 500)
        wait_for(lambda: engine.stats()["active"] == 1, 10, what="engine busy")
        response = await call("POST", f"/v1/requests/{request_id}/cancel", owner.key)
        assert response["status"] == 200
        assert orjson.loads(response["body"]) == {"id": request_id, "object": "request.cancel", "cancelled": True}
        wait_for(lambda: engine.stats()["aborted"] == 1, 5, what="engine abort")
        events = sse_events((await call("GET", f"/v1/requests/{request_id}/stream", owner.key))["body"])
        assert events[-2][1]["choices"][0]["finish_reason"] == "cancelled"
    finally:
        engine.stop()


async def test_request_endpoints_reject_another_orgs_key_missing_keys_and_bad_input(owner, outsider):
    block = await asyncio.to_thread(queued_block, "http://127.0.0.1:1", owner.organization,
                                    queue="inference.nobody")
    from inference.backends.factory import backend_for_block

    request_id = await submit(backend_for_block(block), owner.organization, 5)
    for path in (f"/v1/requests/{request_id}/stream", f"/v1/requests/{request_id}/cancel"):
        method = "GET" if path.endswith("stream") else "POST"
        response = await call(method, path, outsider.key)
        assert response["status"] == 404
        assert orjson.loads(response["body"])["error"]["code"] == "request_not_found"
        response = await call(method, path)
        assert response["status"] == 401
        assert orjson.loads(response["body"])["error"]["code"] == "missing_api_key"
        response = await call(method, path, "sb-not-a-real-key")
        assert response["status"] == 401
        wrong_method = "POST" if method == "GET" else "GET"
        assert (await call(wrong_method, path, owner.key))["status"] == 405
    # The outsider's attempt cancelled nothing.
    assert not await streams.cancel_requested(request_id)

    response = await call("GET", "/v1/requests/does-not-exist/stream", owner.key)
    assert response["status"] == 404
    for bad in ("garbage", "otherrequest:1-0", f"{request_id}:abc"):
        response = await call("GET", f"/v1/requests/{request_id}/stream", owner.key, last_event_id=bad)
        assert response["status"] == 400, bad
        assert orjson.loads(response["body"])["error"]["param"] == "Last-Event-ID"


async def test_a_resumed_stream_that_failed_ends_with_the_error_and_no_done(owner, cpu_worker):
    from inference.backends.factory import backend_for_block

    engine = start_fake_engine(fail_mode="http500")
    try:
        block = await asyncio.to_thread(queued_block, engine.url, owner.organization)
        request_id = await submit(backend_for_block(block), owner.organization, 8)
        response = await call("GET", f"/v1/requests/{request_id}/stream", owner.key)
        assert response["status"] == 200
        events = sse_events(response["body"])
        assert (None, "[DONE]") not in events
        assert "engine exploded" in events[-1][1]["error"]["message"]
    finally:
        engine.stop()
