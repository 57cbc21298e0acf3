"""`GatewayAI`: the agent's model client in this process, through the gateway's pipeline
(inference/gateway/pipeline.py) with an organization's principal, exactly as a /v1/chat/completions
request of that principal: the access check, the API key's allowed models, admission (quotas,
policy), retries and fallbacks, `model: "auto"`, metrics. `ai()` picks it or HttpAI."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from inference.agents.abort import AbortSignal
from inference.agents.ai import (
    AI,
    AIError,
    ChatChunk,
    ChatResult,
    HttpAI,
    body_for,
    result_of,
    stream_with_abort,
)
from inference.gateway.errors import OpenAIError
from inference.gateway.pipeline import prepare
from registry.models import Organization
from registry.principal import Principal


class GatewayAI:
    def __init__(self, model: str, *, principal: Principal | None = None,
                 organization: Organization | None = None):
        if principal is None:
            if organization is None:
                raise ValueError("GatewayAI needs a principal or an organization to act for")
            principal = Principal(organization=organization)
        self.model = model
        self.principal = principal

    async def _complete(self, body: dict[str, Any]) -> ChatResult:
        try:
            call = await prepare(self.principal, body)
            reply = await call.complete()
        except OpenAIError as exc:
            raise AIError(exc.message, status=exc.status, code=exc.code) from None
        return result_of(reply)

    async def chat(self, messages: list[dict[str, Any]], *, abort: AbortSignal | None = None,
                   **options: Any) -> ChatResult:
        body = body_for(self.model, messages, options)
        body.pop("stream", None)
        work = self._complete(body)
        return await (abort.run(work) if abort is not None else work)

    async def _chunks(self, body: dict[str, Any]) -> AsyncIterator[ChatChunk]:
        try:
            call = await prepare(self.principal, body)
            deltas = call.stream()
            counted = False
            try:
                async for delta in deltas:
                    counted = counted or bool(delta.usage)
                    yield ChatChunk(content=delta.content, tool_calls=delta.tool_calls,
                                    finish_reason=delta.finish_reason, usage=delta.usage)
            finally:
                await deltas.aclose()  # closes the upstream stream, so the engine stops generating
            if not counted:  # the backend reported none: the gateway's count (or estimate)
                yield ChatChunk(usage=dict(call.usage))
        except OpenAIError as exc:
            raise AIError(exc.message, status=exc.status, code=exc.code) from None

    def stream(self, messages: list[dict[str, Any]], *, abort: AbortSignal | None = None,
               **options: Any) -> AsyncIterator[ChatChunk]:
        body = body_for(self.model, messages, options)
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
        return stream_with_abort(self._chunks(body), abort)


def ai(model: str, *, base_url: str | None = None, api_key: str | None = None, principal: Principal | None = None,
       organization: Organization | None = None) -> AI:
    """A model client: over HTTP when `base_url` is given, else in this process for `principal`/`organization`."""
    if base_url:
        return HttpAI(model, base_url=base_url, api_key=api_key)
    return GatewayAI(model, principal=principal, organization=organization)
