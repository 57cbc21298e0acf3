"""The suite's one fake OpenAI-compatible upstream, on raw asyncio (fast enough for the gateway benchmark).

One server plays many upstreams: the first path segment picks the behaviour, so each test
block gets its own base URL, e.g. http://127.0.0.1:PORT/delay50/v1. Segments combine with "-":

    ok          a normal answer: "tok0 tok1 ... tok15", usage 8 prompt + `chunks` completion tokens
    status<N>   answer every request with HTTP N (a 429 carries Retry-After: 0, as providers send it)
    flaky<K>    500 for the first K requests to this scenario, then ok
    hang        never answer
    gate        hold every request until the test calls open_gate(), then answer normally
    cut<K>      drop the connection after K stream events (a non-streamed answer: before it is sent)
    delay<MS>   wait before each stream event          wait<MS>  wait before a non-streamed answer
    chunks<N>   content chunks (default 16)            nousage   never stream usage
    ctxlen      a 400 `context_length_exceeded` API error, as llama_cpp.server sends it
    reqid       answer with an x-request-id of its own
    charset<C>  answer every request with {"text": "café"} in UTF-8 under `Content-Type: application/json;
                charset=C` (a remote naming a charset that does not exist)
    script<name> answer each chat with the next reply given to `script(name, ...)`, the last one again
                once they run out (a planner model's replies, an agent's turns): a reply is the content,
                or a dict {"content": ..., "tool_calls": [{"name": ..., "arguments": {...}}]}; a streamed
                request gets it in pieces of 4 characters (`delay<MS>` before each)

It serves POST /v1/chat/completions and /v1/completions (the same tokens as text), GET /v1/models, and
POST /v1/embeddings (8-dimensional vectors derived from each input: floats, or base64 float32 when asked).
It echoes the requested model, so a gateway can pass chunks through untouched. `stats` counts
requests (in all and per scenario name), streams started/completed/aborted, non-streamed waits
aborted, when each abort was seen, and keeps the last request's body and headers.

In a test: `FakeUpstream().start()` serves on its own event loop in a daemon thread (the `fake_upstream`
fixture in tests/conftest.py is one for the whole session); `python -m tests.support.fake_upstream
--port N` serves in a process of its own (the benchmark does).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson

REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 429: "Too Many Requests",
           500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}


@dataclass
class Scenario:
    status: int = 0
    flaky: int = 0
    hang: bool = False
    cut_after: int = 0
    delay_ms: float = 0.0
    chunks: int = 16
    no_usage: bool = False
    wait_ms: float = 0.0
    context_length: bool = False
    request_id: bool = False
    script: str = ""
    gate: bool = False
    charset: str = ""

    @classmethod
    def parse(cls, name: str) -> Scenario:
        scenario = cls()
        for part in name.split("-"):
            for prefix, attr in (("status", "status"), ("flaky", "flaky"), ("cut", "cut_after"),
                                 ("delay", "delay_ms"), ("chunks", "chunks"), ("wait", "wait_ms")):
                if part.startswith(prefix) and part[len(prefix):].isdigit():
                    setattr(scenario, attr, int(part[len(prefix):]))
            if part == "hang":
                scenario.hang = True
            if part == "nousage":
                scenario.no_usage = True
            if part == "ctxlen":
                scenario.context_length = True
            if part == "reqid":
                scenario.request_id = True
            if part.startswith("script") and len(part) > len("script"):
                scenario.script = part[len("script"):]
            if part == "gate":
                scenario.gate = True
            if part.startswith("charset") and len(part) > len("charset"):
                scenario.charset = part[len("charset"):]
        return scenario


@dataclass
class Stats:
    requests: int = 0
    streams_started: int = 0
    streams_completed: int = 0
    streams_aborted: int = 0
    waits_aborted: int = 0
    aborted_at: list[float] = field(default_factory=list)
    by_scenario: Counter[str] = field(default_factory=Counter)
    last_body: dict[str, Any] | None = None
    # Every request body a script<name> scenario received, by name.
    scripted_bodies: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    last_headers: dict[str, str] = field(default_factory=dict)


def answer_text(chunks: int = 16) -> str:
    """The content of a non-streamed answer; streamed, each token is followed by a space."""
    return " ".join(f"tok{i}" for i in range(chunks))


def completion(model: str, chunks: int) -> bytes:
    text = answer_text(chunks)
    return orjson.dumps({
        "id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 8, "completion_tokens": chunks, "total_tokens": 8 + chunks},
    })


def _scripted_calls(reply: str | dict) -> tuple[str, list[dict[str, Any]]]:
    """(content, OpenAI-shaped tool calls) of one scripted reply."""
    if isinstance(reply, str):
        return reply, []
    calls = [{"id": f"call_{i}", "type": "function",
              "function": {"name": call["name"], "arguments": orjson.dumps(call.get("arguments", {})).decode()}}
             for i, call in enumerate(reply.get("tool_calls") or [])]
    return reply.get("content") or "", calls


def scripted_completion(model: str, reply: str | dict) -> bytes:
    content, calls = _scripted_calls(reply)
    message: dict[str, Any] = {"role": "assistant", "content": content or (None if calls else "")}
    if calls:
        message["tool_calls"] = calls
    return orjson.dumps({
        "id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if calls else "stop"}],
        "usage": {"prompt_tokens": 8, "completion_tokens": 4, "total_tokens": 12},
    })


def scripted_stream_events(model: str, reply: str | dict, include_usage: bool) -> list[bytes]:
    content, calls = _scripted_calls(reply)
    base = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": int(time.time()), "model": model}
    events = [{**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}]
    events += [{**base, "choices": [{"index": 0, "delta": {"content": content[i:i + 4]}, "finish_reason": None}]}
               for i in range(0, len(content), 4)]
    if calls:
        events.append({**base, "choices": [{"index": 0, "finish_reason": None, "delta": {
            "tool_calls": [{"index": i, **call} for i, call in enumerate(calls)]}}]})
    events.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls" if calls else "stop"}]})
    if include_usage:
        events.append({**base, "choices": [], "usage": {"prompt_tokens": 8, "completion_tokens": len(events),
                                                        "total_tokens": 8 + len(events)}})
    return [b"data: " + orjson.dumps(e) + b"\n\n" for e in events] + [b"data: [DONE]\n\n"]


def fake_vector(text: Any) -> list[float]:
    """8 floats that depend on the text only (a stand-in embedding)."""
    digest = hashlib.sha256(orjson.dumps(text)).digest()
    return [round(b / 255 - 0.5, 4) for b in digest[:8]]


def embeddings(model: str, inputs: Any, encoding_format: str | None) -> bytes:
    items = [inputs] if isinstance(inputs, str) or (inputs and isinstance(inputs[0], int)) else list(inputs or [])
    data = []
    for index, item in enumerate(items):
        vector = fake_vector(item)
        if encoding_format == "base64":
            vector = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": vector})
    tokens = sum(len(item.split()) if isinstance(item, str) else len(item) for item in items)
    return orjson.dumps({"object": "list", "data": data, "model": model,
                         "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})


def text_completion(model: str, chunks: int) -> bytes:
    """POST /v1/completions: the same tokens as a text_completion."""
    return orjson.dumps({
        "id": "cmpl-fake", "object": "text_completion", "created": int(time.time()), "model": model,
        "choices": [{"text": answer_text(chunks), "index": 0, "logprobs": None,
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 8, "completion_tokens": chunks, "total_tokens": 8 + chunks},
    })


def text_stream_events(model: str, chunks: int, include_usage: bool) -> list[bytes]:
    base = {"id": "cmpl-fake", "object": "text_completion", "created": int(time.time()), "model": model}
    events = [{**base, "choices": [{"text": f"tok{i} ", "index": 0, "logprobs": None, "finish_reason": None}]}
              for i in range(chunks)]
    events.append({**base, "choices": [{"text": "", "index": 0, "logprobs": None, "finish_reason": "stop"}]})
    if include_usage:
        events.append({**base, "choices": [],
                       "usage": {"prompt_tokens": 8, "completion_tokens": chunks, "total_tokens": 8 + chunks}})
    return [b"data: " + orjson.dumps(e) + b"\n\n" for e in events] + [b"data: [DONE]\n\n"]


def stream_events(model: str, chunks: int, include_usage: bool) -> list[bytes]:
    base = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": int(time.time()), "model": model}
    events = [{**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                    "finish_reason": None}]}]
    events += [{**base, "choices": [{"index": 0, "delta": {"content": f"tok{i} "}, "finish_reason": None}]}
               for i in range(chunks)]
    events.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    if include_usage:
        events.append({**base, "choices": [],
                       "usage": {"prompt_tokens": 8, "completion_tokens": chunks, "total_tokens": 8 + chunks}})
    return [b"data: " + orjson.dumps(e) + b"\n\n" for e in events] + [b"data: [DONE]\n\n"]


class _Connection(asyncio.Protocol):
    def __init__(self, server: FakeUpstream):
        self.server = server
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.streaming = False
        self.waiting = False

    def connection_made(self, transport):
        self.transport = transport
        self.server.connections.add(self)

    def connection_lost(self, exc):
        self.server.connections.discard(self)
        if self.waiting:
            self.waiting = False
            self.server.stats.waits_aborted += 1
            self.server.stats.aborted_at.append(time.monotonic())
        if self.streaming:
            # Seen the moment the peer closes, not at the next chunk: the test measures this delay.
            self.streaming = False
            self.server.stats.streams_aborted += 1
            self.server.stats.aborted_at.append(time.monotonic())

    def data_received(self, data: bytes):
        self.buffer += data
        while True:
            head_end = self.buffer.find(b"\r\n\r\n")
            if head_end < 0:
                return
            lines = self.buffer[:head_end].decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            length = 0
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            if len(self.buffer) < head_end + 4 + length:
                return
            body = self.buffer[head_end + 4:head_end + 4 + length]
            self.buffer = self.buffer[head_end + 4 + length:]
            self.server.stats.last_headers = {k.strip().lower(): v.strip()
                                              for k, _, v in (line.partition(":") for line in lines[1:])}
            self.server.tasks.add(task := asyncio.get_running_loop().create_task(self.respond(method, path, body)))
            task.add_done_callback(self.server.tasks.discard)

    def send(self, status: int, payload: bytes, extra: bytes = b"", content_type: bytes = b"application/json") -> None:
        self.transport.write(b"HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: %d\r\n%s\r\n%s"
                             % (status, REASONS.get(status, "Error").encode(), content_type, len(payload), extra,
                                payload))

    async def respond(self, method: str, path: str, body: bytes) -> None:
        stats = self.server.stats
        name, _, rest = path.lstrip("/").partition("/")
        scenario = Scenario.parse(name)
        if method == "GET" and rest.startswith("v1/models"):
            self.send(200, b'{"object":"list","data":[{"id":"fake","object":"model","owned_by":"fake"}]}')
            return
        text = rest.startswith("v1/completions")
        embedding = rest.startswith("v1/embeddings")
        if method != "POST" or not (rest.startswith("v1/chat/completions") or text or embedding):
            self.send(404, b'{"error":{"message":"not found"}}')
            return
        stats.requests += 1
        stats.by_scenario[name] += 1
        count = stats.by_scenario[name]
        if scenario.hang:
            return
        if scenario.charset:
            self.send(200, '{"text": "café"}'.encode(),
                      content_type=b"application/json; charset=" + scenario.charset.encode())
            return
        if scenario.gate:
            await self.server.gate.wait()
        extra = b"x-request-id: upstream-%d\r\n" % stats.requests if scenario.request_id else b""
        if scenario.context_length:
            self.send(400, b'{"error":{"message":"Requested tokens (3000) exceed context window of 2048",'
                           b'"type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}',
                      extra)
            return
        if scenario.status or count <= scenario.flaky:
            status = scenario.status or 500
            self.send(status, b'{"error":{"message":"injected failure from the fake upstream","type":"server_error"}}',
                      b"retry-after: 0\r\n" if status == 429 else b"")
            return
        request = orjson.loads(body or b"{}")
        stats.last_body = request
        model = request.get("model", "fake")
        if embedding:
            self.send(200, embeddings(model, request.get("input"), request.get("encoding_format")), extra)
            return
        scripted = None
        if scenario.script:
            stats.scripted_bodies.setdefault(scenario.script, []).append(request)
            scripted = self.server.next_scripted(scenario.script)
            if not request.get("stream"):
                self.send(200, scripted_completion(model, scripted), extra)
                return
        if not request.get("stream"):
            if scenario.cut_after:
                self.transport.close()
                return
            if scenario.wait_ms:
                self.waiting = True
                await asyncio.sleep(scenario.wait_ms / 1000)
                if self.transport.is_closing():
                    return
                self.waiting = False
            self.send(200, (text_completion if text else completion)(model, scenario.chunks), extra)
            return
        include_usage = bool((request.get("stream_options") or {}).get("include_usage")) and not scenario.no_usage
        self.transport.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                             b"transfer-encoding: chunked\r\ncache-control: no-cache\r\n%s\r\n" % extra)
        stats.streams_started += 1
        self.streaming = True
        if scripted is not None:
            events = scripted_stream_events(model, scripted, include_usage)
        else:
            events = (text_stream_events if text else stream_events)(model, scenario.chunks, include_usage)
        for i, event in enumerate(events):
            if scenario.delay_ms:
                await asyncio.sleep(scenario.delay_ms / 1000)
            if self.transport.is_closing():
                return
            if scenario.cut_after and i >= scenario.cut_after:
                self.streaming = False
                self.transport.close()
                return
            self.transport.write(b"%x\r\n%s\r\n" % (len(event), event))
        self.transport.write(b"0\r\n\r\n")
        self.streaming = False
        stats.streams_completed += 1


class FakeUpstream:
    """`start()` serves on its own event loop in a daemon thread; `base_url(scenario)` for block configs."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.host = host
        self.port = port
        self.stats = Stats()
        self._scripts: dict[str, list[str | dict]] = {}
        self.gate = asyncio.Event()
        self.connections: set[_Connection] = set()
        self.tasks: set[asyncio.Task] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.AbstractServer | None = None
        self._thread: threading.Thread | None = None

    def script(self, name: str, *replies: str | dict, scenario: str = "") -> str:
        """Queue the replies a `script<name>` scenario answers with; returns its base URL (`scenario`:
        more behaviour to combine, e.g. "delay50")."""
        self._scripts[name] = list(replies)
        self.stats.scripted_bodies.pop(name, None)
        return self.base_url(f"script{name}" + (f"-{scenario}" if scenario else ""))

    def next_scripted(self, name: str) -> str | dict:
        replies = self._scripts.get(name) or [""]
        return replies.pop(0) if len(replies) > 1 else replies[0]

    def base_url(self, scenario: str = "ok") -> str:
        return f"http://{self.host}:{self.port}/{scenario}/v1"

    @property
    def hits(self) -> Counter[str]:
        """Requests received per scenario name (0 for one never asked)."""
        return self.stats.by_scenario

    def open_gate(self) -> None:
        """Let every `gate` request through, those waiting and those to come."""
        self._loop.call_soon_threadsafe(self.gate.set)

    async def serve(self) -> asyncio.AbstractServer:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Connection(self), self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self._server

    def start(self) -> FakeUpstream:
        ready = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(self.serve())
            ready.set()
            self._loop.run_forever()
            self._loop.close()

        self._thread = threading.Thread(target=run, daemon=True, name="fake-upstream")
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the fake upstream did not start")
        return self

    def stop(self) -> None:
        """Stop listening, drop open connections and pending answers (a `hang` one too), end the thread."""
        if self._loop is None or self._thread is None:
            return

        def shut() -> None:
            self._server.close()
            for connection in list(self.connections):
                connection.transport.close()
            for task in list(self.tasks):
                task.cancel()
            # One more turn so the cancelled answers unwind before the loop stops.
            self._loop.call_soon(self._loop.stop)

        self._loop.call_soon_threadsafe(shut)
        self._thread.join(10)
        self._thread = None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    upstream = FakeUpstream(args.host, args.port)

    async def forever() -> None:
        await upstream.serve()
        print(f"PORT {upstream.port}", flush=True)
        await asyncio.Event().wait()

    try:
        import uvloop
        uvloop.run(forever())
    except ImportError:
        asyncio.run(forever())


if __name__ == "__main__":
    main()
