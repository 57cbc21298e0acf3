"""What the two gRPC backends (AIOS, OrgLLM) share: checked channels, the call, the seed's sync path
(their messages, errors and session counters: grpc_messages.py, shared with the SDK).

The gateway path uses grpc.aio (one channel per target per event loop, since an aio channel
belongs to the loop that made it); the seed's synchronous path uses a plain grpc channel.
Cancelling the awaiting task cancels the RPC, so the server sees the abort.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import AsyncIterator
from typing import Any

import grpc

from inference.backends import egress
from inference.backends.base import BackendError, ChatDelta, ChatRequest, StreamingBackend, UnsupportedFeature
from inference.backends.content import approximate_usage, input_data_for
from inference.backends.grpc_messages import SessionSequence, frame_ptr_bytes, rpc_error
from registry.egress import EgressDenied, parse_grpc_target

DEFAULT_TIMEOUT_S = 60.0
# A gRPC target's checked address is re-resolved this often (the channel connects to that address).
RESOLVE_TTL_S = 30.0

# Keyed by the loop object itself (weakly): a dead loop's channels must never serve a new loop.
_aio_channels: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop,
                                         dict[tuple[str, str, bool], grpc.aio.Channel]] = weakref.WeakKeyDictionary()


def channel_options(*, host: str, port: int, tls: bool) -> list[tuple[str, Any]]:
    """The channel connects to a checked address, but speaks to the server by its name (authority,
    TLS name check); no proxy from the environment picks another route."""
    options: list[tuple[str, Any]] = [("grpc.default_authority", f"{host}:{port}"), ("grpc.enable_http_proxy", 0)]
    if tls:
        options.append(("grpc.ssl_target_name_override", host))
    return options


def aio_channel(address: str, *, host: str, port: int, tls: bool) -> grpc.aio.Channel:
    """`address`: an `ipv4:`/`ipv6:` target from inference.backends.egress.resolve_target."""
    channels = _aio_channels.setdefault(asyncio.get_running_loop(), {})
    key = (address, host, tls)
    channel = channels.get(key)
    if channel is None:
        options = channel_options(host=host, port=port, tls=tls)
        channel = (grpc.aio.secure_channel(address, grpc.ssl_channel_credentials(), options=options) if tls
                   else grpc.aio.insecure_channel(address, options=options))
        channels[key] = channel
    return channel


def sync_channel(address: str, *, host: str, port: int, tls: bool) -> grpc.Channel:
    options = channel_options(host=host, port=port, tls=tls)
    return (grpc.secure_channel(address, grpc.ssl_channel_credentials(), options=options) if tls
            else grpc.insecure_channel(address, options=options))


async def close_aio_channels() -> None:
    for channel in _aio_channels.pop(asyncio.get_running_loop(), {}).values():
        await channel.close()


def check_config(config: dict[str, Any], *, kind: str, allowed: set[str]) -> None:
    try:
        parse_grpc_target(config.get("target"))
    except ValueError:
        raise BackendError(f'{kind} backend config needs "target": "host:port"', status=500,
                           code="backend_misconfigured") from None
    # "internal" (operator only, registry/egress.py): the target may be an internal address.
    unknown = set(config) - allowed - {"internal"}
    if unknown:
        raise BackendError(f"{kind} backend config has unknown keys: {sorted(unknown)}", status=500,
                           code="backend_misconfigured")
    timeout = config.get("timeout_s")
    if timeout is not None and (not isinstance(timeout, int | float) or timeout <= 0):
        raise BackendError(f'{kind} backend "timeout_s" must be a positive number', status=500,
                           code="backend_misconfigured")


class GrpcBackend(StreamingBackend):
    """One unary RPC per request; subclasses build the request message and read the reply."""

    kind = "grpc"

    def __init__(self, *, target: str, timeout_s: float | None = None, tls: bool = False, internal: bool = False):
        self.target = target
        self.host, self.port = parse_grpc_target(target)
        self.timeout_s = float(timeout_s or DEFAULT_TIMEOUT_S)
        self.tls = tls
        self.internal = internal
        self._sessions = SessionSequence()
        self._sync_channel: grpc.Channel | None = None
        self._address: tuple[str, float] | None = None  # (checked ipv4:/ipv6: target, re-resolve after)

    async def checked_address(self) -> str:
        """The target's address, resolved here and checked against the egress policy (EgressDenied)."""
        if self._address is None or self._address[1] < time.monotonic():
            address = await egress.resolve_target(self.host, self.port, internal_ok=self.internal)
            self._address = (address, time.monotonic() + RESOLVE_TTL_S)
        return self._address[0]

    def _checked_sync_channel(self) -> grpc.Channel:
        address = egress.resolve_target_sync(self.host, self.port, internal_ok=self.internal)
        return sync_channel(address, host=self.host, port=self.port, tls=self.tls)

    def next_seq_no(self, session_id: str) -> int:
        """(session_id, seq_no) names one task: numbering starts at 1 per session, per process."""
        return self._sessions.next(session_id)

    # Subclasses: the stub class, the request message, and (text, usage or None) from the reply.
    def stub(self, channel: Any) -> Any:
        raise NotImplementedError

    def build_request(self, input_data: dict, *, session_id: str, frame_ptr: bytes, model: str) -> Any:
        raise NotImplementedError

    def call(self, stub: Any) -> Any:
        raise NotImplementedError

    def read_reply(self, reply: Any) -> tuple[str, dict[str, int] | None]:
        raise NotImplementedError

    async def infer(self, input_data: dict, *, session_id: str = "", frame_ptr: Any = b"", model: str = "",
                    timeout_s: float | None = None) -> tuple[str, dict[str, int] | None]:
        message = self.build_request(input_data, session_id=session_id, frame_ptr=frame_ptr_bytes(frame_ptr),
                                     model=model)
        try:
            address = await self.checked_address()
        except EgressDenied as exc:
            raise egress.egress_denied(exc) from exc
        rpc = self.call(self.stub(aio_channel(address, host=self.host, port=self.port, tls=self.tls)))
        call = rpc(message, timeout=timeout_s or self.timeout_s)
        try:
            reply = await call
        except grpc.RpcError as exc:
            raise rpc_error(exc, target=self.target) from exc
        finally:
            # The awaiting task was cancelled (client gone): tell the server now.
            if not call.done():
                call.cancel()
        return self.read_reply(reply)

    async def stream_chat(self, request: ChatRequest) -> AsyncIterator[ChatDelta]:
        if request.n != 1:
            raise UnsupportedFeature(f"the {self.kind} backend returns one choice; n must be 1")
        extra = request.extra or {}
        session_id = str(extra.get("session_id") or extra.get("user") or "")
        text, usage = await self.infer(input_data_for(request), session_id=session_id,
                                       frame_ptr=extra.get("frame_ptr"), model=request.model,
                                       timeout_s=request.timeout_s)
        yield ChatDelta(content=text, finish_reason="stop",
                        usage=usage or approximate_usage(request.messages, text))

    # The seed's synchronous interface; session_id and frame_ptr are the SDK's pass-through.
    def run_inference(self, input_data: dict, *, session_id: str = "", frame_ptr: Any = b"",
                      model: str = "") -> str:
        if self._sync_channel is None:
            try:
                self._sync_channel = self._checked_sync_channel()
            except EgressDenied as exc:
                raise egress.egress_denied(exc) from exc
        message = self.build_request(input_data, session_id=session_id, frame_ptr=frame_ptr_bytes(frame_ptr),
                                     model=model or str(input_data.get("model") or ""))
        try:
            reply = self.call(self.stub(self._sync_channel))(message, timeout=self.timeout_s)
        except grpc.RpcError as exc:
            raise rpc_error(exc, target=self.target) from exc
        return self.read_reply(reply)[0]

    def check_execute(self, query: dict) -> tuple[bool, Any]:
        try:
            channel = self._checked_sync_channel()
        except EgressDenied as exc:
            return False, {"status": "egress_denied", "target": self.target, "error": str(exc)}
        except BackendError as exc:
            return False, {"status": "unreachable", "target": self.target, "error": exc.message}
        try:
            grpc.channel_ready_future(channel).result(timeout=min(self.timeout_s, 5.0))
            return True, {"status": "ready", "target": self.target}
        except grpc.FutureTimeoutError:
            return False, {"status": "unreachable", "target": self.target}
        finally:
            channel.close()

    def get_current_estimates(self) -> tuple[bool, Any]:
        return True, {"target": self.target, "timeout_s": self.timeout_s}
