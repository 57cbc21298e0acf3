"""The openai backend reads SSE per network read: events split anywhere, CRLF, a [DONE] without its
newline, a stream that stops early, an event that never ends. A raw TCP upstream sends the bytes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import orjson
import pytest

from inference.backends.base import BackendError, ChatRequest
from inference.backends.openai_compat import OpenAIBackend


def event(content: str, *, newline: bytes = b"\n") -> bytes:
    chunk = {"choices": [{"index": 0, "delta": {"content": content}, "finish_reason": None}]}
    return b"data: " + orjson.dumps(chunk) + newline + newline


USAGE = b'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}\n\n'


@asynccontextmanager
async def upstream(pieces: list[bytes]) -> AsyncIterator[str]:
    """An HTTP/1.1 server that answers every request with `pieces`, each in its own write."""

    handlers: set[asyncio.Task] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handlers.add(asyncio.current_task())
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n")
            for piece in pieces:
                writer.write(piece)
                await writer.drain()
                await asyncio.sleep(0.01)  # separate reads on the client side
        except ConnectionError:
            pass  # the client gave up first, as some tests want
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.close()
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        await server.wait_closed()


async def read(pieces: list[bytes]) -> list:
    async with upstream(pieces) as url:
        backend = OpenAIBackend(base_url=url, model="m", timeout_s=5)
        request = ChatRequest(messages=[{"role": "user", "content": "hi"}], model="m")
        return [d async for d in backend.stream_chat(request)]


def split_every(data: bytes, size: int) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


async def test_events_split_at_any_byte_arrive_whole_and_in_order():
    body = event("Hello") + event(", wor") + event("ld") + USAGE + b"data: [DONE]\n\n"
    deltas = await read(split_every(body, 7))
    assert "".join(d.content for d in deltas) == "Hello, world"
    assert deltas[-1].usage == {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}


async def test_several_events_in_one_read_and_crlf_lines():
    body = event("a", newline=b"\r\n") + event("b", newline=b"\r\n") + b"data: [DONE]\r\n\r\n"
    deltas = await read([body])
    assert [d.content for d in deltas] == ["a", "b"]


async def test_a_done_without_its_newline_still_ends_the_stream():
    deltas = await read([event("x"), b"data: [DONE]"])
    assert [d.content for d in deltas] == ["x"]


async def test_a_stream_that_stops_before_done_is_a_502_after_what_arrived():
    received = []
    with pytest.raises(BackendError) as caught:
        async with upstream([event("x"), b'data: {"choi']) as url:
            backend = OpenAIBackend(base_url=url, model="m", timeout_s=5)
            async for delta in backend.stream_chat(ChatRequest(messages=[{"role": "user", "content": "hi"}],
                                                               model="m")):
                received.append(delta.content)
    assert received == ["x"]
    assert caught.value.status == 502 and caught.value.code == "upstream_stream_cut"


async def test_an_event_that_never_ends_is_refused_before_it_eats_memory():
    with pytest.raises(BackendError) as caught:
        await read([b"data: " + b"x" * (1024 * 1024)] * 9)
    assert caught.value.status == 502 and "larger than 8 MiB" in caught.value.message


async def test_a_malformed_event_is_a_502():
    with pytest.raises(BackendError) as caught:
        await read([b"data: {not json}\n\n", b"data: [DONE]\n\n"])
    assert caught.value.status == 502 and "malformed" in caught.value.message
