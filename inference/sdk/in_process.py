"""The SDK's in-process mode: the registry through the same selectors and services the REST API uses,
and registry blocks run by their backends in this process (a manager with no base_url).

Importing this module needs Django's apps loaded: modes.py sets Django up before it imports it, and
nothing else in the SDK imports it, so a remote caller's plain script never loads Django.

Running a block here sits BELOW the access-control layer: it does not check which organization may
use a block, because the caller already holds the database (it is this server's own code, or an
operator's script). Anything serving outside callers must go through the gateway (or the remote
mode), never call these functions directly.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Iterator
from typing import Any

from rest_framework.exceptions import ValidationError

from inference.backends.base import BackendError, StreamingBackend
from inference.backends.factory import backend_for_block
from inference.backends.grpc_common import GrpcBackend
from inference.backends.openai_compat import close_sessions
from inference.runtime.errors import VMFailure
from inference.runtime.vm import execute
from inference.sdk.http import RegistryError
from inference.sdk.inference import chat_request, checked_input
from inference.sdk.runtime import VMError
from registry.asyncdb import in_db_thread
from registry.auth import local_organization
from registry.envelope import _flatten
from registry.models import Organization
from registry.principal import Principal
from registry.query import QueryError
from registry.selectors import (
    block_get_owned,
    block_get_visible,
    blocks_named_anywhere,
    blocks_query,
)
from registry.serializers import BlockWriteSerializer
from registry.services import BlockConflict, block_create, block_delete
from registry.similarity import blocks_similar_to_payload, hit_to_dict


class InProcessRegistry:
    """The registry of this process's database, acting for `organization` (an Organization or its
    slug; default the built-in "local" organization)."""

    def __init__(self, organization: Any = None):
        self._organization = organization

    @property
    def organization(self) -> Organization:
        if self._organization is None:
            self._organization = local_organization()
        elif isinstance(self._organization, str):
            slug = self._organization
            self._organization = Organization.objects.filter(slug=slug).first()
            if self._organization is None:
                raise RegistryError(f"no organization with slug '{slug}'")
        return self._organization

    def get(self, block_id: str) -> dict:
        block = block_get_visible(organization=self.organization, block_id=block_id)
        if block is None:
            raise RegistryError("block not found", 404)
        return block.to_dict()

    def create(self, block_data: dict) -> dict:
        serializer = BlockWriteSerializer(data=block_data)
        try:
            serializer.is_valid(raise_exception=True)
        except ValidationError as exc:
            raise RegistryError("; ".join(_flatten(exc.detail)), 400) from None
        try:
            return block_create(organization=self.organization, data=serializer.validated_data).to_dict()
        except BlockConflict as exc:
            raise RegistryError(str(exc), 409) from None

    def delete(self, block_id: str) -> None:
        block = block_get_owned(organization=self.organization, block_id=block_id)
        if block is None:
            visible = block_get_visible(organization=self.organization, block_id=block_id)
            if visible is None:
                raise RegistryError("block not found", 404)
            raise RegistryError("only the owning organization can change this block", 403)
        block_delete(block=block)

    def query(self, payload: Any) -> list[dict]:
        try:
            return [b.to_dict() for b in blocks_query(organization=self.organization, payload=payload)]
        except QueryError as exc:
            raise RegistryError(str(exc), 400) from None

    def similarity(self, payload: Any) -> list[dict]:
        try:
            _, hits = blocks_similar_to_payload(organization=self.organization, payload=payload)
        except QueryError as exc:
            raise RegistryError(str(exc), 400) from None
        return [hit_to_dict(hit) for hit in hits]


class BlockNotFound(BackendError):
    def __init__(self, block_id: str, detail: str = ""):
        super().__init__(f"no enabled block {block_id!r}{detail}", status=404, code="model_not_found")


def _block(block_id: str):
    """The block a qualified id "<org-slug>/<block-id>" names, or the one block with a plain id.

    Ids are unique per organization only, so a plain id that several organizations use names
    none of them: this layer has no caller organization to prefer (the SDK sends qualified ids).
    """
    blocks = list(blocks_named_anywhere(block_id).filter(enabled=True)[:2])
    if not blocks:
        raise BlockNotFound(block_id)
    if len(blocks) > 1:
        raise BlockNotFound(block_id, "; several organizations have one: name it '<org-slug>/<block-id>'")
    return blocks[0]


def run_ai_inference(*, block_id: str, input_data: dict, session_id: str = "", frame_ptr: bytes = b"") -> str:
    """The block's answer as text. Synchronous: from async code use `arun_ai_inference`."""
    checked_input(input_data)
    block = _block(block_id)
    backend = backend_for_block(block)
    if isinstance(backend, GrpcBackend):
        return backend.run_inference(input_data, session_id=session_id, frame_ptr=frame_ptr, model=block.block_id)
    return backend.run_inference(input_data)


async def arun_ai_inference(*, block_id: str, input_data: dict, session_id: str = "",
                            frame_ptr: bytes = b"") -> str:
    """run_ai_inference for code already on an event loop (never blocks it)."""
    block = await in_db_thread(_block)(block_id)
    backend: StreamingBackend = backend_for_block(block)
    if isinstance(backend, GrpcBackend):
        text, _ = await backend.infer(input_data, session_id=session_id, frame_ptr=frame_ptr, model=block.block_id)
        return text
    result = await backend.complete(chat_request(input_data, model=block.block_id))
    return result["choices"][0]["message"].get("content") or ""


def estimate(*, block_id: str, session_id: str = "", query: dict | None = None) -> dict:
    """Whether the block can run `query` now, and its current estimates, from its backend."""
    backend = backend_for_block(_block(block_id))
    executable, check = backend.check_execute(query or {})
    estimates_ok, estimates = backend.get_current_estimates()
    return {"block_id": block_id, "session_id": session_id, "executable": bool(executable), "check": check,
            "estimates_ok": bool(estimates_ok), "estimates": estimates}


class InProcessVM:
    """inference.sdk.Runtime without a server: the VM (inference/runtime/vm.py) on an event loop of its own
    (a daemon thread), acting for the organization as its owner, as the embedded default's localhost
    access does. Like the rest of this module it sits below the gateway's authentication."""

    def __init__(self, organization: Any = None):
        self.principal = Principal(organization=InProcessRegistry(organization).organization, dev_mode=True)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="runtime-vm", daemon=True)
        self.thread.start()

    def request(self, frame: dict[str, Any]) -> Iterator[Any]:
        packets: queue.Queue = queue.Queue()

        async def pump() -> None:
            try:
                async for body in execute(self.principal, frame):
                    packets.put(("body", body))
                packets.put(("end", None))
            except VMFailure as exc:
                packets.put(("error", VMError(exc.message, exc.status, exc.code)))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Reported to the caller, who holds the only reference to it.
                packets.put(("error", VMError(f"the runtime failed: {exc!r}", 500, "internal_error")))

        running = asyncio.run_coroutine_threadsafe(pump(), self.loop)
        try:
            while True:
                kind, value = packets.get()
                if kind == "body":
                    yield value
                elif kind == "end":
                    return
                else:
                    raise value
        finally:
            # A caller that stops reading cancels the request, down to the engine (like the socket's cancel).
            running.cancel()

    def close(self) -> None:
        if self.loop.is_running():
            # The pooled upstream connections this loop opened close with it.
            asyncio.run_coroutine_threadsafe(close_sessions(), self.loop).result(5)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)
