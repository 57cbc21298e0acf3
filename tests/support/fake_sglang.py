"""A stand-in for an SGLang server (no GPU): its OpenAI-compatible API and its health/load endpoints.

Run as `python -m tests.support.fake_sglang --port N --token-delay-ms D [--fail-mode MODE]`.
The answer is deterministic ("tok0 tok1 ..."), so a continuation after a prefill can be checked.
Counters at GET /stats: requests, active, completed, aborted (client went away mid-stream).

Failure modes: none | http500 (every chat call fails) | cut (streams stop after 3 tokens
without [DONE]) | unhealthy (/health answers 503 forever) | slow-start (healthy after 1.5 s).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

import orjson
from aiohttp import web

WORD = "tok{} "


def _token(i: int) -> str:
    return WORD.format(i)


class FakeEngine:
    def __init__(self, *, token_delay_ms: float, fail_mode: str, tokens: int, model: str):
        self.delay = token_delay_ms / 1000.0
        self.fail_mode = fail_mode
        self.default_tokens = tokens
        self.model = model
        self.started = time.monotonic()
        self.stats = {"requests": 0, "active": 0, "completed": 0, "aborted": 0, "max_active": 0}

    def healthy(self) -> bool:
        if self.fail_mode == "unhealthy":
            return False
        if self.fail_mode == "slow-start":
            return time.monotonic() - self.started > 1.5
        return True

    async def health(self, request: web.Request) -> web.Response:
        return web.Response(status=200 if self.healthy() else 503, text="ok")

    async def model_info(self, request: web.Request) -> web.Response:
        if not self.healthy():
            return web.Response(status=503)
        return web.json_response({"model_path": self.model, "is_generation": True})

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": self.model, "object": "model"}]})

    async def get_load(self, request: web.Request) -> web.Response:
        # SGLang reports per-DP-rank load; one rank here.
        return web.json_response([{"dp_rank": 0, "num_reqs": self.stats["active"],
                                   "num_waiting_reqs": 0, "num_tokens": 0}])

    async def get_stats(self, request: web.Request) -> web.Response:
        return web.json_response({**self.stats, "pid": os.getpid()})

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body = orjson.loads(await request.read())
        self.stats["requests"] += 1
        if self.fail_mode == "http500":
            return web.json_response({"error": {"message": "engine exploded", "type": "server_error"}},
                                     status=500)
        messages = body.get("messages") or []
        if not messages:
            return web.json_response({"error": {"message": "messages is required"}}, status=400)
        # A trailing assistant message is a prefill: continue the deterministic answer after it.
        start = 0
        if messages[-1].get("role") == "assistant":
            start = len((messages[-1].get("content") or "").split())
        total = start + int(body.get("max_tokens") or self.default_tokens)
        prompt_tokens = sum(len(str(m.get("content") or "").split()) for m in messages)
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": max(total - start, 0),
                 "total_tokens": prompt_tokens + max(total - start, 0)}
        if not body.get("stream"):
            await asyncio.sleep(self.delay * (total - start))
            self.stats["completed"] += 1
            text = "".join(_token(i) for i in range(start, total))
            return web.json_response({
                "id": "chatcmpl-fake", "object": "chat.completion", "model": self.model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                             "finish_reason": "length"}],
                "usage": usage})
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        self.stats["active"] += 1
        self.stats["max_active"] = max(self.stats["max_active"], self.stats["active"])
        try:
            for i in range(start, total):
                await asyncio.sleep(self.delay)
                if self.fail_mode == "cut" and i - start >= 3:
                    self.stats["completed"] += 1
                    return resp
                chunk = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "model": self.model,
                         "choices": [{"index": 0, "delta": {"content": _token(i)}, "finish_reason": None}]}
                await resp.write(b"data: " + orjson.dumps(chunk) + b"\n\n")
            final = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "model": self.model,
                     "choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]}
            await resp.write(b"data: " + orjson.dumps(final) + b"\n\n")
            if (body.get("stream_options") or {}).get("include_usage"):
                await resp.write(b"data: " + orjson.dumps({"id": "chatcmpl-fake", "choices": [],
                                                           "usage": usage}) + b"\n\n")
            await resp.write(b"data: [DONE]\n\n")
            self.stats["completed"] += 1
        except (ConnectionResetError, asyncio.CancelledError):
            # aiohttp cancels the handler when the client disconnects: that is SGLang's abort.
            self.stats["aborted"] += 1
            raise
        finally:
            self.stats["active"] -= 1
        return resp


def make_app(engine: FakeEngine) -> web.Application:
    app = web.Application()
    app.router.add_get("/health", engine.health)
    app.router.add_get("/health_generate", engine.health)
    app.router.add_get("/get_model_info", engine.model_info)
    app.router.add_get("/v1/models", engine.models)
    app.router.add_get("/get_load", engine.get_load)
    app.router.add_get("/stats", engine.get_stats)
    app.router.add_post("/v1/chat/completions", engine.chat)
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--token-delay-ms", type=float, default=10.0)
    parser.add_argument("--tokens", type=int, default=16, help="answer length when max_tokens is unset")
    parser.add_argument("--fail-mode", default="none",
                        choices=["none", "http500", "cut", "unhealthy", "slow-start"])
    # SGLang's own flags, accepted so the supervisor's real command line works unchanged.
    parser.add_argument("--model-path", default="fake-model")
    parser.add_argument("--tp", "--tp-size", dest="tp", default="1")
    parser.add_argument("--mem-fraction-static", default=None)
    parser.add_argument("--context-length", default=None)
    parser.add_argument("--served-model-name", default=None)
    args, _unknown = parser.parse_known_args(argv)
    engine = FakeEngine(token_delay_ms=args.token_delay_ms, fail_mode=args.fail_mode, tokens=args.tokens,
                        model=args.served_model_name or args.model_path)
    web.run_app(make_app(engine), host=args.host, port=args.port, print=None, access_log=None,
                handler_cancellation=True)


if __name__ == "__main__":
    main()
