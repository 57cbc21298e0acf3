"""The narrow interface an agent (and RLM mode's llmQuery) uses to talk to a model, and its HTTP client.

    result = await ai.chat(messages, abort=signal, temperature=0, tools=[...], response_format={...})
    async for chunk in ai.stream(messages, abort=signal, **options): ...

`messages` and the options are OpenAI's chat completion body (the model is the client's unless
`model=` is given). Two implementations: `HttpAI` (here: any Switchboard or OpenAI-compatible server
over HTTP with an API key; no Django) and `GatewayAI` (inference/agents/gateway_ai.py: in-process,
through the gateway's own pipeline with an organization's principal, so access checks, quotas, policy
retries and fallbacks, and `model: "auto"` apply exactly as for a /v1 request).

A call given an `abort` signal runs as a task that the signal cancels: an HTTP stream is closed at
once and AgentAborted is raised (inference/agents/abort.py).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp

from inference.agents.abort import AbortSignal
from inference.sdk.http import default_key, default_url, error_message, inference_timeout


class AIError(Exception):
    """The model call was refused or failed: `status` is the HTTP status (or the gateway's), `code` its code."""

    def __init__(self, message: str, *, status: int = 502, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code

    @property
    def unsupported(self) -> bool:
        """The block refused a feature (tools, a response_format): the caller may retry without it."""
        return self.status == 400 and self.code in ("unsupported_parameter", "unsupported_value",
                                                    "unsupported_feature")


@dataclass
class ChatResult:
    """One finished answer: its text, its native tool calls (OpenAI's shape), token usage."""

    content: str = ""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    usage: dict[str, int] = field(default_factory=dict)
    finish_reason: str | None = None
    model: str = ""


@dataclass
class ChatChunk:
    """One streamed piece: text, tool-call deltas (OpenAI's shape, merged by `merge_tool_calls`), and on
    the last ones the finish reason and usage."""

    content: str = ""
    tool_calls: list[dict[str, Any]] | None = None
    finish_reason: str | None = None
    usage: dict[str, int] | None = None


class AI(Protocol):
    model: str

    async def chat(self, messages: list[dict[str, Any]], *, abort: AbortSignal | None = None,
                   **options: Any) -> ChatResult: ...

    def stream(self, messages: list[dict[str, Any]], *, abort: AbortSignal | None = None,
               **options: Any) -> AsyncIterator[ChatChunk]: ...


def merge_tool_calls(calls: list[dict[str, Any]], deltas: list[dict[str, Any]] | None) -> None:
    """Fold streamed tool-call deltas (by `index`) into whole calls, in place."""
    for delta in deltas or []:
        index = delta.get("index", len(calls))
        while len(calls) <= index:
            calls.append({"id": "", "type": "function", "function": {"name": "", "arguments": ""}})
        call = calls[index]
        if delta.get("id"):
            call["id"] = delta["id"]
        function = delta.get("function") or {}
        call["function"]["name"] += function.get("name") or ""
        call["function"]["arguments"] += function.get("arguments") or ""


def body_for(model: str, messages: list[dict[str, Any]], options: dict[str, Any]) -> dict[str, Any]:
    body = {"model": options.pop("model", None) or model, "messages": messages}
    body.update({k: v for k, v in options.items() if v is not None})
    return body


async def stream_with_abort(chunks: AsyncIterator[ChatChunk], abort: AbortSignal | None) -> AsyncIterator[ChatChunk]:
    """Each next chunk awaited under `abort`: abort() cancels the read, which closes the stream."""
    try:
        while True:
            try:
                chunk = await (abort.run(anext(chunks)) if abort is not None else anext(chunks))
            except StopAsyncIteration:
                return
            yield chunk
    finally:
        await chunks.aclose()


class HttpAI:
    """A Switchboard gateway (or any OpenAI-compatible server) over HTTP: POST {base_url}/v1/chat/completions
    with `Authorization: Bearer <api_key>`. `base_url` defaults to SWITCHBOARD_URL, the key to
    SWITCHBOARD_API_KEY (inference/sdk/http.py)."""

    def __init__(self, model: str, *, base_url: str | None = None, api_key: str | None = None,
                 timeout_s: float | None = None):
        self.model = model
        root = (base_url or default_url()).rstrip("/")
        self.url = root + ("/chat/completions" if root.endswith("/v1") else "/v1/chat/completions")
        self.api_key = default_key(api_key)
        self.timeout_s = timeout_s or inference_timeout()

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    async def _refusal(self, response: aiohttp.ClientResponse) -> AIError:
        raw = await response.read()
        try:
            payload = json.loads(raw)
        except ValueError:
            payload = raw.decode(errors="replace")[:500]
        code = payload.get("error", {}).get("code") if isinstance(payload, dict) and isinstance(
            payload.get("error"), dict) else None
        return AIError(f"{self.url} answered {response.status}: {error_message(payload)}",
                       status=response.status, code=code)

    async def _complete(self, body: dict[str, Any]) -> ChatResult:
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        try:
            async with aiohttp.ClientSession(timeout=timeout) as session, \
                    session.post(self.url, json=body, headers=self._headers()) as response:
                if response.status >= 400:
                    raise await self._refusal(response)
                reply = await response.json(content_type=None)
        except aiohttp.ClientError as exc:
            raise AIError(f"cannot reach {self.url}: {exc}", status=502, code="upstream_unreachable") from None
        except TimeoutError:
            raise AIError(f"{self.url} did not answer in {self.timeout_s:g} s", status=504,
                          code="upstream_timeout") from None
        return result_of(reply)

    async def chat(self, messages: list[dict[str, Any]], *, abort: AbortSignal | None = None,
                   **options: Any) -> ChatResult:
        body = body_for(self.model, messages, options)
        body.pop("stream", None)
        work = self._complete(body)
        return await (abort.run(work) if abort is not None else work)

    async def _chunks(self, body: dict[str, Any]) -> AsyncIterator[ChatChunk]:
        timeout = aiohttp.ClientTimeout(total=None, sock_read=self.timeout_s)
        try:
            async with aiohttp.ClientSession(timeout=timeout) as session, \
                    session.post(self.url, json=body, headers=self._headers()) as response:
                if response.status >= 400:
                    raise await self._refusal(response)
                async for line in response.content:
                    line = line.strip()
                    if not line.startswith(b"data:"):
                        continue
                    data = line[5:].strip()
                    if data == b"[DONE]":
                        return
                    event = json.loads(data)
                    if "error" in event and "choices" not in event:
                        raise AIError(f"the stream failed: {error_message(event)}", status=502,
                                      code=(event["error"] or {}).get("code") if isinstance(event["error"], dict)
                                      else None)
                    yield chunk_of(event)
        except aiohttp.ClientError as exc:
            raise AIError(f"cannot reach {self.url}: {exc}", status=502, code="upstream_unreachable") from None

    def stream(self, messages: list[dict[str, Any]], *, abort: AbortSignal | None = None,
               **options: Any) -> AsyncIterator[ChatChunk]:
        body = body_for(self.model, messages, options)
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
        return stream_with_abort(self._chunks(body), abort)


def result_of(reply: dict[str, Any]) -> ChatResult:
    """A ChatResult from an OpenAI chat.completion object."""
    choice = (reply.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    return ChatResult(content=message.get("content") or "", tool_calls=list(message.get("tool_calls") or []),
                      usage=dict(reply.get("usage") or {}), finish_reason=choice.get("finish_reason"),
                      model=reply.get("model") or "")


def chunk_of(event: dict[str, Any]) -> ChatChunk:
    """A ChatChunk from an OpenAI chat.completion.chunk object."""
    choices = event.get("choices") or []
    if not choices:
        return ChatChunk(usage=event.get("usage"))
    choice = choices[0]
    delta = choice.get("delta") or {}
    return ChatChunk(content=delta.get("content") or "", tool_calls=delta.get("tool_calls"),
                     finish_reason=choice.get("finish_reason"), usage=event.get("usage"))
