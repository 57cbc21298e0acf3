"""Servers for HTTP-level tests: a fault-injecting fake OpenAI upstream and the real ASGI app,
each on its own thread and event loop, on a free port."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections import Counter

from aiohttp import web


def _free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


class FakeUpstream:
    """OpenAI-compatible chat completions; the first path segment picks the behaviour:

    /ok/v1/...     a normal answer ("healthy answer"), streamed or not
    /fail500/v1/...  HTTP 500          /fail429/v1/...  HTTP 429 with Retry-After: 0
    /gate/v1/...   like ok, once the test calls open_gate() (keeps every request in flight until then)
    /hang/v1/...   never answers       /cut/v1/...      streams two events, then drops the connection
    `hits` counts requests per behaviour.
    """

    def __init__(self):
        self.hits: Counter[str] = Counter()
        self._loop = asyncio.new_event_loop()
        self._sock = _free_socket()
        self.port = self._sock.getsockname()[1]
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._ready = threading.Event()
        self._gate = asyncio.Event()

    def open_gate(self) -> None:
        self._loop.call_soon_threadsafe(self._gate.set)

    def base_url(self, mode: str) -> str:
        return f"http://127.0.0.1:{self.port}/{mode}/v1"

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        mode = request.match_info["mode"]
        self.hits[mode] += 1
        body = await request.json()
        if mode == "fail500":
            return web.json_response({"error": {"message": "upstream exploded", "type": "server_error"}},
                                     status=500)
        if mode == "fail429":
            return web.json_response({"error": {"message": "slow down", "type": "rate_limit"}}, status=429,
                                     headers={"Retry-After": "0"})
        if mode == "hang":
            await asyncio.sleep(3600)
        if mode == "gate":
            await self._gate.wait()
        text = "healthy answer"
        usage = {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9}
        if not body.get("stream"):
            if mode == "cut":
                request.transport.close()
                return web.Response()
            return web.json_response({
                "id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()),
                "model": body.get("model", "fake"),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": usage})
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for word in text.split():
            chunk = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": int(time.time()),
                     "model": body.get("model", "fake"),
                     "choices": [{"index": 0, "delta": {"content": word + " "}, "finish_reason": None}]}
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
            if mode == "cut":
                request.transport.close()
                return response
        final = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": int(time.time()),
                 "model": body.get("model", "fake"),
                 "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "usage": usage}
        await response.write(f"data: {json.dumps(final)}\n\ndata: [DONE]\n\n".encode())
        await response.write_eof()
        return response

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_post("/{mode}/v1/chat/completions", self._chat)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
        self._loop.run_until_complete(self._runner.setup())
        site = web.SockSite(self._runner, self._sock)
        self._loop.run_until_complete(site.start())
        self._ready.set()
        self._loop.run_forever()

    def start(self) -> FakeUpstream:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the fake upstream did not start")
        return self

    def stop(self) -> None:
        async def down():
            if self._runner is not None:
                await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(down(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


class LiveASGI:
    """webapp.asgi.application under uvicorn, as production runs it."""

    def __init__(self):
        import uvicorn

        from webapp.asgi import application

        self._sock = _free_socket()
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        # Lifespan on, as production serves it: shutdown flushes metrics and closes upstream sessions.
        config = uvicorn.Config(application, lifespan="on", log_level="warning", access_log=False)
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=lambda: asyncio.run(self.server.serve(sockets=[self._sock])),
                                        daemon=True)

    def start(self) -> LiveASGI:
        from django.db import connections

        # Each request's thread closes its connection when done, so the test database can be dropped.
        self._max_age = connections["default"].settings_dict.get("CONN_MAX_AGE")
        connections["default"].settings_dict["CONN_MAX_AGE"] = 0
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        from django.db import connections

        self.server.should_exit = True
        self._thread.join(10)
        connections["default"].settings_dict["CONN_MAX_AGE"] = self._max_age
