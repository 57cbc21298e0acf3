"""Direct path to a block's SGLang engines: pick a ready engine, stream from it over its OpenAI API.

Engines are started and registered by GPU workers (inference/workers). The gateway streams
straight to the least loaded engine whose heartbeat is fresh; the bytes travel through the
same pooled OpenAIBackend as any OpenAI-compatible upstream.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from inference.backends.base import BackendError, ChatDelta, ChatRequest, StreamingBackend
from inference.backends.engines import EngineChoice, _ready_engines, apick_engine, inflight
from inference.backends.openai_compat import OpenAIBackend


class NoEngine(BackendError):
    def __init__(self, block_id: str):
        super().__init__(f"no ready engine is serving {block_id!r} (none registered, or heartbeats stale)",
                         status=503, code="engine_unavailable")


class SGLangBackend(StreamingBackend):
    def __init__(self, *, block_id: str, timeout_s: float | None = None, block_pk: int | None = None):
        self.block_id = block_id
        self.timeout_s = timeout_s
        # Engines belong to one block row: ids repeat across organizations, pks do not.
        self.engine_key: int | str = block_pk if block_pk is not None else block_id
        self._clients: dict[str, OpenAIBackend] = {}

    @classmethod
    def for_block(cls, block_id: str, backend_type: str, config: dict[str, Any],
                  block_pk: int | None = None) -> SGLangBackend:
        return cls(block_id=block_id, timeout_s=config.get("timeout_s"), block_pk=block_pk)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> SGLangBackend:
        return cls(block_id=config["block_id"], timeout_s=config.get("timeout_s"))

    def client_for(self, engine: EngineChoice) -> OpenAIBackend:
        client = self._clients.get(engine.endpoint)
        if client is None:
            # Supervisors start engines with --served-model-name <block_id>.
            # Engines are registered by the operator's GPU workers: internal by construction.
            client = OpenAIBackend(base_url=f"{engine.endpoint}/v1", model=self.block_id,
                                   timeout_s=self.timeout_s, internal=True)
            self._clients[engine.endpoint] = client
        return client

    async def _engine(self) -> EngineChoice:
        engine = await apick_engine(self.engine_key)
        if engine is None:
            raise NoEngine(self.block_id)
        return engine

    async def stream_chat(self, request: ChatRequest) -> AsyncIterator[ChatDelta]:
        engine = await self._engine()
        inflight[engine.id] += 1
        stream = self.client_for(engine).stream_chat(request)
        try:
            async for delta in stream:
                yield delta
        finally:
            inflight[engine.id] -= 1
            await stream.aclose()

    async def complete(self, request: ChatRequest) -> dict[str, Any]:
        engine = await self._engine()
        inflight[engine.id] += 1
        try:
            return await self.client_for(engine).complete(request)
        finally:
            inflight[engine.id] -= 1

    def run_inference(self, input_data: dict) -> str:
        raise BackendError("SGLang blocks are served through the gateway (/v1/chat/completions)", status=400)

    def check_execute(self, query: dict) -> tuple[bool, Any]:
        engines = _ready_engines(self.engine_key)
        return bool(engines), {"ready_engines": len(engines)}

    def get_current_estimates(self) -> tuple[bool, Any]:
        engines = _ready_engines(self.engine_key)
        return True, {"ready_engines": len(engines), "capacity": sum(e.capacity for e in engines),
                      "load": sum(e.load for e in engines)}
