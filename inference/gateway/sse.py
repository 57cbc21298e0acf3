"""OpenAI chunk framing for server-sent events.

Upstream chunks (ChatDelta.raw) go out byte for byte whenever they already name the block
as their model; otherwise only `model` is rewritten. Backends without raw chunks (the
built-in model, gRPC) get chunks built here.
"""

from __future__ import annotations

import time

import orjson

from inference.backends.base import ChatDelta
from inference.gateway.errors import OpenAIError

DONE = b"data: [DONE]\n\n"


def error_event(error: OpenAIError) -> bytes:
    return b"data: " + error.json() + b"\n\n"


class ChunkWriter:
    """Turns one stream's deltas into SSE bytes for one client."""

    def __init__(self, *, chunk_id: str, block_id: str, include_usage: bool, text: bool = False):
        self.id = chunk_id
        self.block_id = block_id
        self.include_usage = include_usage
        # A /v1/completions stream: text_completion chunks with choices[].text.
        self.text = text
        self.object = "text_completion" if text else "chat.completion.chunk"
        self.created = int(time.time())
        self.system_fingerprint: str | None = None
        self._model_marker = b'"model":"' + block_id.encode() + b'"'
        self._last_raw: bytes | None = None
        self._seen_upstream = False
        self._started: set[int] = set()
        self.sent_usage = False

    def frame(self, delta: ChatDelta) -> bytes:
        out = self._pass_through(delta) if delta.raw is not None else self._built(delta)
        if delta.event_id and out:
            # Resumable (queued) streams: the client sends this back as Last-Event-ID.
            out = b"id: " + delta.event_id.encode() + b"\n" + out
        return out

    def _pass_through(self, delta: ChatDelta) -> bytes:
        raw = delta.raw
        # One upstream chunk with several choices arrives as several deltas sharing its bytes.
        if raw is self._last_raw:
            return b""
        self._last_raw = raw
        if not self._seen_upstream:
            # Once a stream: a usage chunk the gateway adds later carries the stream's own id and created.
            self._seen_upstream = True
            self._adopt(orjson.loads(raw))
        if delta.usage:
            if not self.include_usage and b'"choices":[]' in raw.replace(b" ", b""):
                return b""  # The gateway asked for usage for its own metering; the client did not.
            self.sent_usage = self.include_usage
        if self._model_marker not in raw:
            chunk = orjson.loads(raw)
            chunk["model"] = self.block_id
            raw = orjson.dumps(chunk)
        return b"data: " + raw + b"\n\n"

    def _adopt(self, chunk: dict) -> None:
        if isinstance(chunk.get("id"), str):
            self.id = chunk["id"]
        if isinstance(chunk.get("created"), int):
            self.created = chunk["created"]
        if isinstance(chunk.get("system_fingerprint"), str):
            self.system_fingerprint = chunk["system_fingerprint"]

    def _built(self, delta: ChatDelta) -> bytes:
        if self.text:
            return self._built_text(delta)
        out = b""
        if delta.content or delta.finish_reason or delta.tool_calls or delta.index not in self._started:
            body: dict = {}
            if delta.index not in self._started:
                self._started.add(delta.index)
                body["role"] = "assistant"
            if delta.content:
                body["content"] = delta.content
            if delta.tool_calls:
                body["tool_calls"] = delta.tool_calls
            out += self._chunk([{"index": delta.index, "delta": body, "finish_reason": delta.finish_reason}])
        if delta.usage and self.include_usage:
            out += self.usage_chunk(delta.usage)
        return out

    def _built_text(self, delta: ChatDelta) -> bytes:
        out = b""
        if delta.content or delta.finish_reason:
            out += self._chunk([{"text": delta.content, "index": delta.index, "logprobs": None,
                                 "finish_reason": delta.finish_reason}])
        if delta.usage and self.include_usage:
            out += self.usage_chunk(delta.usage)
        return out

    def usage_chunk(self, usage: dict) -> bytes:
        self.sent_usage = True
        return self._chunk([], usage=usage)

    def _chunk(self, choices: list, usage: dict | None = None) -> bytes:
        chunk = {"id": self.id, "object": self.object, "created": self.created,
                 "model": self.block_id, "choices": choices}
        if self.system_fingerprint is not None:
            chunk["system_fingerprint"] = self.system_fingerprint
        if usage is not None:
            chunk["usage"] = usage
        return b"data: " + orjson.dumps(chunk) + b"\n\n"
