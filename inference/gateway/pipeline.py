"""One chat request, top to bottom; the HTTP and WebSocket transports both run exactly this.

    principal = await authenticate(authorization, client_host)     # 401
    call = await prepare(principal, body)      # 400, then block_access(): 404, 403, then admit(): 429...
    reply = await call.complete()        or    async for delta in call.stream(): ...
                                                                    # 502/504 (+ retries, fallbacks)

`complete()` and `stream()` settle the admission and record metrics themselves, whatever
happens. Retries and fallbacks only happen before the first byte reaches the client: once
a stream has started, an upstream failure ends it with an error event instead.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import itertools
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

from django.conf import settings

from inference import metrics, request_log
from inference.backends.base import BackendError, ChatDelta, ChatRequest, StreamingBackend
from inference.backends.factory import backend_for_block
from inference.context_window.hook import SessionTurn, attach_session
from inference.gateway.errors import OpenAIError
from inference.gateway.validation import ChatBody, parse_chat_body, parse_completion_body
from inference.planner.routing import BadAutoModel, NoFittingModel, Route, is_auto, route_conversation
from inference.planner.selector import Ask, PlannerUnavailable
from registry.auth import AuthError, aprincipal_for
from registry.models import Block
from registry.principal import Principal
from registry.selectors import block_reference
from registry.tenancy.access import BlockAccess, block_access
from registry.tenancy.admission import admit
from registry.tenancy.policy import Admission, GateError, Policy

log = logging.getLogger(__name__)
# One line per finished request, with its x-request-id (a logger of its own, so it can be silenced).
request_lines = logging.getLogger("inference.gateway.requests")
T = TypeVar("T")

# Request ids: 72 random bits per process and a counter, so making one costs a string format, not a
# uuid4 call (the gateway's hot path). Shaped as a version-4 UUID because upstreams may insist on one
# (llama_cpp.server answers 400 to an X-Request-Id that is not).
_random = os.urandom(9).hex()
_REQUEST_PREFIX = f"{_random[:8]}-{_random[8:12]}-4{_random[12:15]}-8{_random[15:18]}-"
_request_numbers = itertools.count(1)


def new_request_id() -> str:
    return f"{_REQUEST_PREFIX}{next(_request_numbers) & 0xFFFFFFFFFFFF:012x}"


# 1. Who is calling: registry.auth's principal cache (the only one) answers a warm key with no
# thread hop; expiry and revocation are checked on every request.
async def authenticate(authorization: str | None, client_host: str | None) -> Principal:
    try:
        principal = await aprincipal_for(authorization, client_host)
    except AuthError as exc:
        raise OpenAIError(401, exc.message, code=exc.code) from None
    if principal is None:
        raise OpenAIError(401, "You didn't provide an API key. Send it as 'Authorization: Bearer <key>'.",
                          code="missing_api_key")
    return principal


# 2-3. What they ask for, and which block that is.
def loop_guard(hops_header: str | None) -> int:
    """How many gateways a request already went through, from the X-Switchboard-Hops header that a
    gateway's OpenAI backend sets (registry.egress.HOPS_HEADER); 508 `loop_detected` past
    GATEWAY_MAX_HOPS, so a block pointing at a gateway cannot multiply one chat into many."""
    if hops_header is None:
        return 0
    if not (hops_header.isascii() and hops_header.isdigit()):
        return 0  # Not a count a gateway wrote. A client cannot lower a count: each gateway writes its own.
    hops = int(hops_header) if len(hops_header) < 6 else settings.GATEWAY_MAX_HOPS + 1
    if hops > settings.GATEWAY_MAX_HOPS:
        raise OpenAIError(508, f"This request already went through the gateway {hops_header} times: a block "
                               "points back at a gateway. Point its backend at the real upstream.",
                          code="loop_detected")
    return hops


def gate_error(exc: GateError) -> OpenAIError:
    return OpenAIError(exc.status, exc.message, code=exc.code, param=exc.param, headers=exc.headers)


async def resolve_model(principal: Principal, model: str) -> BlockAccess:
    """The one access check of a request (registry.tenancy.access): 404 model_not_found, 403 model_not_allowed."""
    try:
        return await block_access(principal=principal, model=model)
    except GateError as exc:
        raise gate_error(exc) from None


async def prepare(principal: Principal, body: dict[str, Any], *, force_stream: bool = False,
                  hops: int = 0, request_id: str | None = None, text: bool = False) -> ChatCall:
    """`hops`: how many gateways the request already went through (loop_guard); `request_id`: the
    x-request-id the transport answers with; `text`: a POST /v1/completions body (a prompt, no messages)."""
    started = time.perf_counter()
    body, session = await attach_session(principal, body, text=text)  # `session_id`: the history goes first
    chat = parse_completion_body(body) if text else parse_chat_body(body, force_stream=force_stream)
    # Queued streams are resumable and cancellable by their own organization only.
    chat.request.organization_id = principal.organization.pk
    chat.request.hops = hops
    chat.request.request_id = request_id
    route = None
    if is_auto(chat.request.model):
        if text:
            raise OpenAIError(400, "'auto' chooses a model from a conversation: use /v1/chat/completions, or name "
                                   "a model here.", param="model", code="unsupported_value")
        route = await route_auto(principal, chat, hops=hops, request_id=request_id)
        chat.request.model = route.model  # admission, logs and the reply name the block chosen
    # The one access check (registry.tenancy.access), on the block the caller named or the planner chose.
    access = await resolve_model(principal, chat.request.model)
    block = access.block
    if not block.backend_type:
        raise OpenAIError(400, f"The model '{chat.request.model}' is a registry entry with no inference backend; "
                               "give it a backend to run it.", param="model", code="model_not_runnable")
    if text:
        check_serves_completions(block, chat.request.model)
    else:
        check_serves_chat(block, chat.request.model)
    # 4. The organization's policy: quotas, limits, and the rules the call below follows.
    try:
        admission = await admit(access=access, request=chat.request,
                                estimated_prompt_tokens=chat.estimated_prompt_tokens)
    except GateError as exc:
        raise gate_error(exc) from None
    return ChatCall(principal=principal, chat=chat, block=block, admission=admission, started=started,
                    route=route, session=session)


async def route_auto(principal: Principal, chat: ChatBody, *, hops: int = 0, request_id: str | None = None) -> Route:
    """The block `model: "auto"` (or "auto:<tag>") runs on (inference/planner/routing.py); a planner model,
    when the organization's mode asks one, runs through prepare() like any chat."""
    try:
        return await route_conversation(
            principal=principal, request=chat.request, prompt_tokens=chat.estimated_prompt_tokens,
            ask_for=lambda planner: planner_ask(principal, planner, hops=hops, request_id=request_id))
    except BadAutoModel as exc:
        raise OpenAIError(400, str(exc), param="model", code="invalid_value") from None
    except NoFittingModel as exc:
        raise OpenAIError(404, exc.message, param="model", code="no_fitting_model") from None


# Enough for {"id": ..., "reason": ...} with a reason of up to 200 characters.
PLANNER_MAX_TOKENS = 300


def planner_ask(principal: Principal, planner: Block, *, hops: int = 0, request_id: str | None = None) -> Ask:
    """How the planner package asks `planner` (an LLM block) for its choice: a chat at temperature 0 under
    the caller's own admission, quota and metrics; any refusal or failure is PlannerUnavailable."""
    reference = block_reference(planner, organization=principal.organization)

    async def ask(messages: list[dict[str, Any]], response_format: dict[str, Any] | None) -> str:
        body: dict[str, Any] = {"model": reference, "messages": messages, "temperature": 0,
                                "max_tokens": PLANNER_MAX_TOKENS}
        if response_format is not None:
            body["response_format"] = response_format
        try:
            call = await prepare(principal, body, hops=hops, request_id=request_id)
            reply = await call.complete()
        except OpenAIError as exc:
            raise PlannerUnavailable(f"{reference} answered {exc.status}: {exc.message}") from None
        try:
            return reply["choices"][0]["message"]["content"] or ""
        except (KeyError, IndexError, TypeError):
            raise PlannerUnavailable(f"{reference} sent no message") from None

    return ask


def check_serves_chat(block: Block, model: str) -> None:
    """400 `unsupported_endpoint` before admission for a block whose backend serves no chat (an embedding model)."""
    try:
        serves = backend_for_block(block).serves_chat
    except BackendError as exc:
        raise _upstream_error(exc) from None
    if not serves:
        raise OpenAIError(400, f"The model '{model}' ({block.backend_type} backend) serves /v1/embeddings only.",
                          param="model", code="unsupported_endpoint")


def check_serves_completions(block: Block, model: str) -> None:
    """400 `unsupported_endpoint` before admission when the block's backend cannot complete raw text."""
    try:
        serves = backend_for_block(block).serves_completions
    except BackendError as exc:
        raise _upstream_error(exc) from None
    if not serves:
        raise OpenAIError(400, f"The model '{model}' ({block.backend_type} backend) does not serve "
                               "/v1/completions; use /v1/chat/completions.", param="model",
                          code="unsupported_endpoint")


def _upstream_error(exc: BackendError) -> OpenAIError:
    # An upstream API error's param and type travel as they came (its code is exc.code already).
    return OpenAIError(exc.status, exc.message, code=exc.code, param=exc.param, type=exc.type)


def _timed_out() -> BackendError:
    return BackendError("upstream timed out", status=504, code="upstream_timeout")


def _attempt_timeout(policy: Policy, block: Block) -> float:
    """The stricter of the organization's policy and the block's own configured timeout."""
    configured = (block.backend_config or {}).get("timeout_s")
    if isinstance(configured, int | float) and not isinstance(configured, bool) and configured > 0:
        return min(policy.timeout_s, float(configured))
    return policy.timeout_s


def log_refusal(principal: Principal, *, body: Any, error: OpenAIError, request_id: str | None,
                started: float) -> None:
    """A request log row for a request refused before any block ran (inference.request_log, off the
    request path). Its prompt is never kept: the body may not even be a conversation."""
    key = principal.api_key
    model = body.get("model") if isinstance(body, dict) else None
    request_log.record(request_log.Pending(
        organization_pk=principal.organization.pk, created_at=time.time(), request_id=request_id or "",
        api_key_pk=key.pk if key is not None else None, key_label=_key_label(principal), block_pk=None,
        model=model if isinstance(model, str) else "", status=error.status,
        stream=bool(isinstance(body, dict) and body.get("stream") is True),
        latency_ms=round((time.perf_counter() - started) * 1000, 3), ttft_ms=None, tokens_in=0, tokens_out=0,
        route=None, error=error.message))


def _key_label(principal: Principal) -> str:
    key = principal.api_key
    if key is not None:
        return f"{key.name} ({key.prefix}…)"
    if principal.dev_mode:
        return "localhost (no key)"
    user = principal.user
    return f"session: {user.get_username()}" if user is not None else ""


# 5-6. Running it under the policy, then accounting.
def upstream_session_id(principal: Principal, session: SessionTurn) -> str:
    """The session id a block of another organization sees (a gRPC packet's `session_id`, the seed's
    stateful inference): one per (caller organization, session), like the context window store's key, so
    two organizations' sessions of the same name never share state on a shared upstream; opaque, so the
    block's owner learns neither the caller nor its session names."""
    digest = hashlib.sha256(f"{principal.organization.pk}:{session.session_id}".encode()).hexdigest()
    return f"sb-{digest[:32]}"


class ChatCall:
    def __init__(self, *, principal: Principal, chat: ChatBody, block: Block, admission: Admission,
                 started: float | None = None, route: Route | None = None, session: SessionTurn | None = None):
        self.principal = principal
        # How `model: "auto"` chose the block (x-switchboard-route); None when the caller named it.
        self.route = route
        self.chat = chat
        self.block = block  # The block that finally served (a fallback, maybe).
        self.admission = admission
        self.policy: Policy = admission.policy
        self.started = started or time.perf_counter()
        self.ran = False
        # Set when every attempt failed: each was already recorded in the metrics.
        self.failures_recorded = False
        self.usage: dict[str, int] = {}
        self.finish_reason: str | None = None
        # A POST /v1/completions call: the backend's completion methods, text_completion objects.
        self.text = chat.request.prompt is not None
        self.request_id = chat.request.request_id
        # The last attempt's upstream x-request-id, when its upstream sent one.
        self.upstream_request_id: str | None = None
        # Set when the usage reported is the gateway's estimate (no backend count, no tokenizer).
        self.usage_estimated = False
        # The backend and request of the attempt that served (for its tokenizer).
        self.backend: StreamingBackend | None = None
        self.attempt_request: ChatRequest | None = None
        # The context window session the request named: its answer is appended once complete.
        self.session = session
        # Set by inference/workflows/holds.py once a person approved the request, where a policy's
        # `approval_required` asks for one. A caller that cannot wait (a workflow node, the SDK) is refused.
        self.approved = False
        # What the request log records of a failure (the status and message the client got).
        self.error_status: int | None = None
        self.error_message = ""
        # The answer's text, for the request log (kept only where the organization asks for it).
        self.answer_text: str | None = None

    @property
    def needs_approval(self) -> bool:
        return bool(self.policy.approval_required) and not self.approved

    async def _refuse_unapproved(self, *, advice: str = "send it to /v1/chat/completions or the WebSocket "
                                                         "chat, which wait for the decision") -> None:
        """Fail closed: no path reaches a block whose policy wants a person's approval without one."""
        if self.needs_approval:
            await self.admission.release()
            raise OpenAIError(403, f"The model '{self.model_name}' runs only after a person approves the request "
                                   f"(policy approval_required); {advice}.", code="approval_required")

    @property
    def model_name(self) -> str:
        """The served block as the caller names it: a foreign block by its qualified id, and any
        block by its qualified id when the caller asked for it so (a plain platform id may be
        shadowed by one of the caller's own names)."""
        if self.chat.request.model == self.block.qualified_id:
            return self.block.qualified_id
        return block_reference(self.block, organization=self.principal.organization)

    @property
    def stream_requested(self) -> bool:
        return self.chat.stream

    @property
    def include_usage(self) -> bool:
        return self.chat.include_usage

    def _candidates(self) -> Iterator[Block]:
        yield self.block
        # The fallbacks admit resolved and checked (by id, never by name, under the primary's access
        # rule); one of another kind (an optimizer never stands in for an LLM) is skipped.
        for block in self.admission.fallbacks:
            if block.pk != self.block.pk and block.kind == self.block.kind:
                yield block

    def _retryable(self, exc: BackendError) -> bool:
        # A loop is never retried: each retry would multiply the requests around the loop.
        return (exc.status != 400 and exc.code != "loop_detected"
                and (exc.upstream_status or exc.status) in self.policy.retry_on)

    async def _with_policy(self, attempt: Callable[[StreamingBackend, ChatRequest], Awaitable[T]]) -> T:
        """Per-attempt timeout, retries with backoff, then the fallback chain."""
        error: BackendError | None = None
        for block in self._candidates():
            timeout_s = _attempt_timeout(self.policy, block)
            request = dataclasses.replace(self.chat.request, model=block.block_id, timeout_s=timeout_s)
            if self.session is not None and block.organization_id != self.principal.organization.pk:
                request.extra = {**request.extra, "session_id": upstream_session_id(self.principal, self.session)}
            for n in range(self.policy.retries + 1):
                if n:
                    await asyncio.sleep(self.policy.backoff_s * 2 ** (n - 1))
                attempt_started = time.perf_counter()
                try:
                    backend = backend_for_block(block)
                    async with asyncio.timeout(timeout_s):
                        result = await attempt(backend, request)
                    self.block = block
                    self.backend = backend
                    self.attempt_request = request
                    self.upstream_request_id = request.upstream_request_id
                    self.ran = True  # Something was generated: settle usage, not release.
                    return result
                except TimeoutError:
                    error = _timed_out()
                except BackendError as exc:
                    error = exc
                self.upstream_request_id = request.upstream_request_id
                # Every failed attempt counts against the block that failed, fallbacks or not.
                metrics.record(block_pk=block.pk, organization_pk=self.principal.organization.pk, ok=False,
                               ttft_ms=None, tokens_in=0, tokens_out=0,
                               latency_ms=(time.perf_counter() - attempt_started) * 1000)
                if not self._retryable(error):
                    break
            if (error.status < 500 and error.status != 429) or error.code == "loop_detected":
                break  # The request itself is bad (or looping): another block would refuse it too.
        assert error is not None
        self.failures_recorded = True
        raise self._failed(_upstream_error(error))

    def _failed(self, error: OpenAIError) -> OpenAIError:
        self.error_status = error.status
        self.error_message = error.message
        return error

    @property
    def response_id(self) -> str:
        """The id of a reply the gateway builds (a backend's own id is kept where it sends one)."""
        return f"{'cmpl' if self.text else 'chatcmpl'}-{id(self):x}{int(self.started * 1e6):x}"

    async def complete(self) -> dict[str, Any]:
        await self._refuse_unapproved()
        ok = False
        usage: dict[str, int] = {}
        try:
            if self.text:
                reply = await self._with_policy(lambda backend, request: backend.complete_text(request))
            else:
                reply = await self._with_policy(lambda backend, request: backend.complete(request))
            reply["model"] = self.model_name
            reply.setdefault("id", self.response_id)
            reply.setdefault("object", "text_completion" if self.text else "chat.completion")
            reply.setdefault("created", int(time.time()))
            usage = await self._fill_usage(reply)
            first = (reply.get("choices") or [{}])[0]
            self.answer_text = first.get("text") if self.text else (first.get("message") or {}).get("content")
            if self.session is not None:
                await self.session.answered(self.answer_text or "")
            ok = True
            return reply
        except asyncio.CancelledError:
            self.error_status, self.error_message = 499, "the client went away"
            raise
        finally:
            await self._finish(ok=ok, usage=usage, ttft_ms=None)

    async def prompt_tokens(self) -> int:
        """The prompt's tokens by the backend's tokenizer when it has one, else the gateway's estimate
        (which counts the chat template's framing) and usage_estimated is set."""
        counted = None
        if self.backend is not None and self.attempt_request is not None:
            try:
                counted = await self.backend.count_prompt_tokens(self.attempt_request)
            except BackendError:
                counted = None
        if counted is not None:
            return counted
        self.usage_estimated = True
        return self.chat.estimated_prompt_tokens

    async def _fill_usage(self, reply: dict[str, Any]) -> dict[str, int]:
        usage = reply.get("usage") or {}
        if not usage.get("prompt_tokens"):
            usage["prompt_tokens"] = await self.prompt_tokens()
        if "completion_tokens" not in usage:
            self.usage_estimated = True
            text = sum(len(c.get("text") or (c.get("message") or {}).get("content") or "")
                       for c in reply.get("choices") or [])
            usage["completion_tokens"] = text // 4
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        reply["usage"] = usage
        return usage

    async def stream(self) -> AsyncIterator[ChatDelta]:
        """Deltas as the backend yields them; raises OpenAIError (before or after the first one)."""
        await self._refuse_unapproved()
        opened: list[AsyncIterator[ChatDelta]] = []

        async def first_delta(backend: StreamingBackend, request: ChatRequest) -> ChatDelta | None:
            deltas = backend.stream_completion(request) if self.text else backend.stream_chat(request)
            opened.append(deltas)
            try:
                return await anext(deltas)
            except StopAsyncIteration:
                return None
            except BaseException:
                await deltas.aclose()
                raise

        ok = False
        left = False
        usage: dict[str, int] = {}
        pieces = 0
        answer: list[str] = []
        ttft_ms: float | None = None
        deltas: AsyncIterator[ChatDelta] | None = None
        try:
            first = await self._with_policy(first_delta)
            deltas = opened[-1]
            ttft_ms = (time.perf_counter() - self.started) * 1000
            # After the first delta the backend enforces request.timeout_s on the rest itself: an
            # asyncio.timeout around every chunk costs ~20 us each, most of a stream's overhead.
            delta = first
            while delta is not None:
                if delta.usage:
                    usage = delta.usage
                if delta.content:
                    pieces += 1
                    answer.append(delta.content)
                if delta.finish_reason:
                    self.finish_reason = delta.finish_reason
                yield delta
                try:
                    delta = await anext(deltas)
                except StopAsyncIteration:
                    delta = None
            self.answer_text = "".join(answer)
            if self.session is not None:
                await self.session.answered(self.answer_text)
            ok = True
        except (asyncio.CancelledError, GeneratorExit):
            ok = True  # The client went away: not the block's failure.
            left = True
            raise
        except TimeoutError:
            raise self._failed(_upstream_error(_timed_out())) from None
        except BackendError as exc:
            raise self._failed(_upstream_error(exc)) from None
        finally:
            if left:
                self.answer_text = "".join(answer)
                self.error_status, self.error_message = 499, "the client went away"
            if deltas is not None:
                await deltas.aclose()
            if not usage:
                # The backend reported none: its tokenizer counts the prompt (not for a client that
                # left: nothing waits for the count), else the estimate, labelled as such.
                if self.ran and not left:
                    prompt = await self.prompt_tokens()
                else:
                    prompt, self.usage_estimated = self.chat.estimated_prompt_tokens, True
                usage = {"prompt_tokens": prompt, "completion_tokens": pieces}
            await self._finish(ok=ok, usage=usage, ttft_ms=ttft_ms)

    def _log_request(self, *, ok: bool, latency_ms: float, ttft_ms: float | None) -> None:
        """One request log row, queued in memory (inference.request_log writes it off the request path)."""
        key = self.principal.api_key
        request = self.chat.request
        status = 200 if ok and self.error_status is None else (self.error_status or 500)
        request_log.record(request_log.Pending(
            organization_pk=self.principal.organization.pk, created_at=time.time(),
            request_id=self.request_id or "", api_key_pk=key.pk if key is not None else None,
            key_label=_key_label(self.principal),
            block_pk=self.block.pk, model=self.model_name, status=status, stream=self.chat.stream,
            latency_ms=round(latency_ms, 3), ttft_ms=round(ttft_ms, 3) if ttft_ms is not None else None,
            tokens_in=self.usage["prompt_tokens"], tokens_out=self.usage["completion_tokens"],
            route=self.route.to_dict() if self.route is not None else None,
            error="" if status == 200 else self.error_message or "failed",
            prompt=request.prompt if self.text else request.messages, answer=self.answer_text))

    async def _finish(self, *, ok: bool, usage: dict[str, int], ttft_ms: float | None) -> None:
        prompt = int(usage.get("prompt_tokens") or 0)
        completion = int(usage.get("completion_tokens") or 0)
        self.usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
        latency_ms = (time.perf_counter() - self.started) * 1000
        if ok or not self.failures_recorded:
            metrics.record(block_pk=self.block.pk, organization_pk=self.principal.organization.pk, ok=ok,
                           latency_ms=latency_ms, ttft_ms=ttft_ms, tokens_in=prompt, tokens_out=completion)
        self._log_request(ok=ok, latency_ms=latency_ms, ttft_ms=ttft_ms)
        if request_lines.isEnabledFor(logging.INFO):
            request_lines.info("request_id=%s upstream_request_id=%s org=%s model=%s ok=%s prompt_tokens=%d "
                               "completion_tokens=%d ms=%.1f", self.request_id, self.upstream_request_id,
                               self.principal.organization.slug, self.block.block_id, ok, prompt, completion,
                               latency_ms)
        try:
            if self.ran:
                await self.admission.settle(prompt_tokens=prompt, completion_tokens=completion)
            else:
                await self.admission.release()
        except Exception:  # Accounting trouble must not turn a served answer into an error.
            log.exception("settling the admission for %s failed", self.block.block_id)
