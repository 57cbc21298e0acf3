"""POST /v1/embeddings: the chat pipeline's auth, naming rule, admission, quotas, policy loop and metrics,
around a backend's `embed` instead of a generation.

    call = await prepare_embeddings(principal, body)     # 400, 404, 403, then admit(): 429...
    reply = await call.embed()                           # 502/504 (+ retries, fallbacks)

A block whose backend serves no embeddings (a chat model) is a 400 `unsupported_endpoint` before
admission, and so is a parameter its backend cannot honour (`dimensions` other than the built-in
model's 384, token ids for the built-in model): nothing is reserved for a request that cannot run.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from inference.backends.base import BackendError, EmbeddingRequest
from inference.backends.factory import backend_for_block
from inference.gateway.errors import OpenAIError
from inference.gateway.pipeline import ChatCall, gate_error, resolve_model
from inference.gateway.validation import parse_embedding_body
from inference.planner.routing import is_auto
from registry.models import Block
from registry.principal import Principal
from registry.tenancy.admission import admit
from registry.tenancy.policy import GateError


def _serves_embeddings(block: Block) -> bool:
    try:
        return backend_for_block(block).serves_embeddings
    except BackendError:
        return False


def check_embedding_block(block: Block, request: EmbeddingRequest) -> None:
    """400 before admission: the block serves no embeddings, or cannot honour this request's parameters."""
    try:
        backend = backend_for_block(block)
        if not backend.serves_embeddings:
            raise OpenAIError(400, f"The model '{request.model}' ({block.backend_type} backend) does not serve "
                                   "/v1/embeddings; name an embedding model (GET /v1/models lists them).",
                              param="model", code="unsupported_endpoint")
        backend.check_embedding_request(request)
    except BackendError as exc:
        raise OpenAIError(exc.status, exc.message, code=exc.code, param=exc.param, type=exc.type) from None


async def prepare_embeddings(principal: Principal, body: dict[str, Any], *, hops: int = 0,
                             request_id: str | None = None) -> EmbeddingCall:
    started = time.perf_counter()
    parsed = parse_embedding_body(body)
    request = parsed.request
    assert isinstance(request, EmbeddingRequest)
    request.organization_id = principal.organization.pk
    request.hops = hops
    request.request_id = request_id
    if is_auto(request.model):
        raise OpenAIError(400, "'auto' chooses a chat model from a conversation; name an embedding model here.",
                          param="model", code="unsupported_value")
    access = await resolve_model(principal, request.model)
    block = access.block
    if not block.backend_type:
        raise OpenAIError(400, f"The model '{request.model}' is a registry entry with no inference backend.",
                          param="model", code="model_not_runnable")
    check_embedding_block(block, request)
    try:
        admission = await admit(access=access, request=request, estimated_prompt_tokens=parsed.estimated_prompt_tokens)
    except GateError as exc:
        raise gate_error(exc) from None
    return EmbeddingCall(principal=principal, chat=parsed, block=block, admission=admission, started=started)


class EmbeddingCall(ChatCall):
    """One embeddings request under the admitted policy; settles the admission and records metrics."""

    def _candidates(self) -> Iterator[Block]:
        # A policy's fallback that serves no embeddings (a chat model) cannot stand in: skipped.
        for block in super()._candidates():
            if block.pk == self.block.pk or _serves_embeddings(block):
                yield block

    async def embed(self) -> dict[str, Any]:
        # Embeddings are never held (nothing waits for a decision here): under approval_required they
        # fail closed, as a workflow node does, rather than run what the policy wants a person to see.
        await self._refuse_unapproved(advice="/v1/embeddings does not wait for a decision, so it is refused")
        ok = False
        usage: dict[str, int] = {}
        try:
            reply = await self._with_policy(lambda backend, request: backend.embed(request))
            reply["model"] = self.model_name
            reply.setdefault("object", "list")
            reported = reply.get("usage") or {}
            prompt = reported.get("prompt_tokens")
            if not isinstance(prompt, int) or isinstance(prompt, bool) or prompt <= 0:
                # An upstream that reports none: the gateway's estimate, labelled as such.
                self.usage_estimated = True
                prompt = self.chat.estimated_prompt_tokens
            reply["usage"] = {"prompt_tokens": prompt, "total_tokens": prompt}
            usage = {"prompt_tokens": prompt, "completion_tokens": 0}
            ok = True
            return reply
        finally:
            await self._finish(ok=ok, usage=usage, ttft_ms=None)
