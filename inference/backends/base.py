"""The one interface every inference backend implements (the seed's LLMInferenceAPI).

The seed's three synchronous methods are kept exactly; the gateway uses the async
streaming method, which every built-in backend implements natively.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any


class LLMInferenceAPI(ABC):
    @abstractmethod
    def run_inference(self, input_data: dict) -> str:
        """Run one inference and return the text."""

    @abstractmethod
    def check_execute(self, query: dict) -> tuple[bool, Any]:
        """A cheap feasibility check: (ok, details)."""

    @abstractmethod
    def get_current_estimates(self) -> tuple[bool, Any]:
        """Resource or latency estimates: (ok, details)."""


@dataclass
class ChatRequest:
    """A validated chat request as the gateway hands it to a backend."""

    messages: list[dict[str, Any]]
    model: str
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: list[str] | None = None
    n: int = 1
    seed: int | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: Any = None
    response_format: dict[str, Any] | None = None
    stream_options: dict[str, Any] | None = None
    # Set by the gateway from the effective policy; None means the backend's own default.
    timeout_s: float | None = None
    # Who asked (set by the gateway): resumable queued requests let only this org cancel or resume.
    organization_id: int | None = None
    # How many gateways this request already went through (X-Switchboard-Hops); sent on as hops + 1.
    hops: int = 0
    # A trailing assistant message is a prefill the model continues (kept in `messages`).
    # Fields the gateway does not interpret but a pass-through backend forwards as they came.
    extra: dict[str, Any] = field(default_factory=dict)
    # Set for POST /v1/completions: the raw prompt to continue (no chat template; `messages` is empty).
    prompt: str | list[Any] | None = None
    # The gateway's id for this request (x-request-id), sent upstream by backends that speak HTTP.
    request_id: str | None = None
    # Set by a backend when its upstream answered with its own x-request-id (the client gets that one).
    upstream_request_id: str | None = None


@dataclass
class EmbeddingRequest(ChatRequest):
    """A POST /v1/embeddings request. It is a ChatRequest with no messages so that it rides the chat
    pipeline unchanged: admission, quotas, the policy loop (timeouts, retries, fallbacks) and metrics."""

    # Texts, or token ids (a list of integers, or a list of such lists) for backends that take them.
    input: list[Any] = field(default_factory=list)
    encoding_format: str = "float"
    dimensions: int | None = None
    # "query" or "passage" for models trained with both prefixes (E5); None: the backend's default.
    input_type: str | None = None


@dataclass
class ChatDelta:
    """One piece of a streamed answer. `usage` and `finish_reason` come on the last one."""

    content: str = ""
    index: int = 0
    finish_reason: str | None = None
    usage: dict[str, int] | None = None
    tool_calls: list[dict[str, Any]] | None = None
    # A pass-through backend may hand over the upstream's chunk untouched, to skip re-encoding.
    raw: bytes | None = None
    # Set by resumable (queued) streams: the SSE `id:` a client sends back as Last-Event-ID.
    event_id: str | None = None


class BackendError(Exception):
    """An upstream failed. `status` is the HTTP status the gateway answers with."""

    def __init__(self, message: str, *, status: int = 502, code: str = "upstream_error",
                 upstream_status: int | None = None, param: str | None = None, type: str | None = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.upstream_status = upstream_status
        # An upstream API error's own `param` and `type`, passed through to the client as they came.
        self.param = param
        self.type = type


class UnsupportedFeature(BackendError):
    def __init__(self, message: str):
        super().__init__(message, status=400, code="unsupported_parameter")


class UnsupportedEndpoint(BackendError):
    def __init__(self, message: str):
        super().__init__(message, status=400, code="unsupported_endpoint")


class StreamingBackend(LLMInferenceAPI):
    """A backend the gateway can stream from without blocking the event loop."""

    # Whether the backend serves POST /v1/completions (stream_completion / complete_text).
    serves_completions: bool = False
    # Whether it serves chat (every backend but an embedding model's) and POST /v1/embeddings (embed).
    serves_chat: bool = True
    serves_embeddings: bool = False
    # False for a backend whose usage is an approximation (words, not tokens): the gateway labels it.
    reports_usage: bool = True

    async def count_prompt_tokens(self, request: ChatRequest) -> int | None:
        """The prompt's tokens by the model's own tokenizer and chat template, or None when this
        backend has no tokenizer (the gateway then estimates, and says so)."""
        return None

    def stream_completion(self, request: ChatRequest) -> AsyncIterator[ChatDelta]:
        """A text completion of `request.prompt`, for backends with serves_completions."""
        raise UnsupportedEndpoint(f"{type(self).__name__} does not serve /v1/completions")

    async def complete_text(self, request: ChatRequest) -> dict[str, Any]:
        """A whole text_completion object, for backends with serves_completions."""
        drained = await _drain(self.stream_completion(request))
        choices = [{"text": drained.text(index), "index": index, "logprobs": None,
                    "finish_reason": drained.finish.get(index, "stop")} for index in drained.indexes()]
        return {"object": "text_completion", "model": request.model, "choices": choices, "usage": drained.usage}

    def check_embedding_request(self, request: EmbeddingRequest) -> None:
        """Raise a 400 BackendError naming the `param` this backend cannot honour; called before
        admission, so a refused request reserves no quota."""
        if not self.serves_embeddings:
            raise UnsupportedEndpoint(f"{type(self).__name__} does not serve /v1/embeddings")

    async def embed(self, request: EmbeddingRequest) -> dict[str, Any]:
        """An OpenAI embeddings `list` object for request.input, for backends with serves_embeddings."""
        raise UnsupportedEndpoint(f"{type(self).__name__} does not serve /v1/embeddings")

    @abstractmethod
    def stream_chat(self, request: ChatRequest) -> AsyncIterator[ChatDelta]:
        """Yield deltas; closing the iterator (aclose) must abort the upstream work."""

    async def complete(self, request: ChatRequest) -> dict[str, Any]:
        """A whole chat.completion object. Backends with a cheaper non-streaming call override this."""
        drained = await _drain(self.stream_chat(request))
        choices = []
        for index in drained.indexes():
            message: dict[str, Any] = {"role": "assistant", "content": drained.text(index)}
            if drained.tool_calls.get(index):
                message["tool_calls"] = drained.tool_calls[index]
            choices.append({"index": index, "message": message,
                            "finish_reason": drained.finish.get(index, "stop")})
        return {"object": "chat.completion", "model": request.model, "choices": choices,
                "usage": drained.usage}

    async def aclose(self) -> None:
        """Release pooled connections or engines."""


@dataclass
class _Drained:
    """A whole stream of deltas, gathered per choice index."""

    texts: dict[int, list[str]] = field(default_factory=dict)
    finish: dict[int, str | None] = field(default_factory=dict)
    tool_calls: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    usage: dict[str, int] = field(default_factory=dict)

    def indexes(self) -> list[int]:
        return sorted(self.texts) or [0]

    def text(self, index: int) -> str:
        return "".join(self.texts.get(index, []))


async def _drain(stream: AsyncIterator[ChatDelta]) -> _Drained:
    """Read `stream` to its end (closing it whatever happens): what complete() and complete_text()
    build their one-shot answers from."""
    drained = _Drained()
    try:
        async for delta in stream:
            drained.texts.setdefault(delta.index, []).append(delta.content)
            if delta.finish_reason:
                drained.finish[delta.index] = delta.finish_reason
            if delta.tool_calls:
                drained.tool_calls.setdefault(delta.index, []).extend(delta.tool_calls)
            if delta.usage:
                drained.usage = delta.usage
    finally:
        await stream.aclose()
    return drained
