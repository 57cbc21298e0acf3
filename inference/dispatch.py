"""Running a block by id, for the Python SDK (KnownLLMs.run_ai_inference / estimate).

In-process (no base_url): the block comes from this process's database and its backend
runs here. Remote (base_url): the same request goes to a Switchboard server's HTTP API
with an API key, where the gateway applies that key's organization and policies.

This module sits BELOW the access-control layer: in-process calls do not check which
organization may use a block, because the caller already holds the database (it is this
server's own code, or an operator's script). Anything serving outside callers must go
through the gateway (or the remote mode here), never call these functions directly.

The remote path runs in a plain Python process (no Django settings, standard library only):
Django and the backends are imported only on the in-process path.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from typing import Any

from inference.backends.base import BackendError, ChatRequest, StreamingBackend
from inference.backends.messages import chat_request_from_input, messages_from_input

# The server's UPSTREAM_TIMEOUT_S default, read from the environment as webapp.settings does:
# a remote caller has no Django settings to read it from.
DEFAULT_REMOTE_TIMEOUT_S = 120.0


class BlockNotFound(BackendError):
    def __init__(self, block_id: str, detail: str = ""):
        super().__init__(f"no enabled block {block_id!r}{detail}", status=404, code="model_not_found")


def _block(block_id: str):
    """The block a qualified id "<org-slug>/<block-id>" names, or the one block with a plain id.

    Ids are unique per organization only, so a plain id that several organizations use names
    none of them: this layer has no caller organization to prefer (the SDK sends qualified ids).
    """
    from registry.selectors import blocks_named_anywhere

    blocks = list(blocks_named_anywhere(block_id).filter(enabled=True)[:2])
    if not blocks:
        raise BlockNotFound(block_id)
    if len(blocks) > 1:
        raise BlockNotFound(block_id, "; several organizations have one: name it '<org-slug>/<block-id>'")
    return blocks[0]


async def _ablock(block_id: str):
    from registry.asyncdb import in_db_thread

    return await in_db_thread(_block)(block_id)


def _backend(block) -> StreamingBackend:
    from inference.backends.factory import backend_for_block

    return backend_for_block(block)


def _is_grpc(backend: StreamingBackend) -> bool:
    from inference.backends.grpc_common import GrpcBackend

    return isinstance(backend, GrpcBackend)


def run_ai_inference(*, block_id: str, input_data: dict, session_id: str = "", frame_ptr: bytes = b"",
                     base_url: str | None = None, api_key: str | None = None) -> str:
    """The block's answer as text. Synchronous: from async code use `arun_ai_inference`."""
    if not isinstance(input_data, dict):
        raise BackendError("input_data must be a dict", status=400, code="invalid_request_error")
    if base_url:
        return _remote_chat(base_url=base_url, api_key=api_key, block_id=block_id, input_data=input_data,
                            session_id=session_id, frame_ptr=frame_ptr)
    block = _block(block_id)
    backend = _backend(block)
    if _is_grpc(backend):
        return backend.run_inference(input_data, session_id=session_id, frame_ptr=frame_ptr, model=block.block_id)
    return backend.run_inference(input_data)


async def arun_ai_inference(*, block_id: str, input_data: dict, session_id: str = "",
                            frame_ptr: bytes = b"") -> str:
    """In-process run_ai_inference for code already on an event loop (never blocks it)."""
    block = await _ablock(block_id)
    backend = _backend(block)
    if _is_grpc(backend):
        text, _ = await backend.infer(input_data, session_id=session_id, frame_ptr=frame_ptr, model=block.block_id)
        return text
    request = _chat_request(input_data, model=block.block_id)
    result = await backend.complete(request)
    return result["choices"][0]["message"].get("content") or ""


def _chat_request(input_data: dict, *, model: str) -> ChatRequest:
    try:
        return chat_request_from_input(input_data, model=model)
    except ValueError as exc:
        raise BackendError(str(exc), status=400, code="invalid_request_error") from exc


def estimate(*, block_id: str, session_id: str = "", query: dict | None = None, base_url: str | None = None,
             api_key: str | None = None) -> dict:
    """Whether the block can run `query` now, and its current estimates."""
    if base_url:
        body = {"block_id": block_id, "session_id": session_id, "search_query": query or {}}
        return _remote_envelope(f"{base_url.rstrip('/')}/discovery/estimate", body, api_key=api_key)
    backend = _backend(_block(block_id))
    executable, check = backend.check_execute(query or {})
    estimates_ok, estimates = backend.get_current_estimates()
    return {"block_id": block_id, "session_id": session_id, "executable": bool(executable), "check": check,
            "estimates_ok": bool(estimates_ok), "estimates": estimates}


# Remote mode: stdlib urllib keeps the SDK free of HTTP client dependencies.

def _remote_timeout() -> float:
    return float(os.environ.get("UPSTREAM_TIMEOUT_S") or DEFAULT_REMOTE_TIMEOUT_S)


def _post_json(url: str, body: dict, *, api_key: str | None) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=_remote_timeout()) as resp:  # noqa: S310
            status, payload = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, payload = exc.code, exc.read()
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise BackendError(f"cannot reach {url}: {reason}", status=502, code="upstream_unreachable") from exc
    try:
        return status, json.loads(payload) if payload else None
    except ValueError:
        return status, payload.decode(errors="replace")[:500]


def _error_message(payload: Any) -> str:
    if isinstance(payload, dict):
        error = payload.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if payload.get("message"):
            return str(payload["message"])
    return str(payload)


def _remote_chat(*, base_url: str, api_key: str | None, block_id: str, input_data: dict, session_id: str,
                 frame_ptr: bytes) -> str:
    request = _chat_request(input_data, model=block_id)
    body: dict[str, Any] = {"model": block_id, "messages": messages_from_input(input_data)}
    for name in ("max_tokens", "temperature", "top_p", "stop", "seed"):
        value = getattr(request, name)
        if value is not None:
            body[name] = value
    # Only sent when set: the gateway hands them to gRPC backends, which keep sessions.
    if session_id:
        body["session_id"] = session_id
    if frame_ptr:
        body["frame_ptr"] = frame_ptr.decode(errors="replace")
    url = f"{base_url.rstrip('/')}/v1/chat/completions"
    status, payload = _post_json(url, body, api_key=api_key)
    if status != 200:
        raise BackendError(f"{url} answered {status}: {_error_message(payload)}",
                           status=status if 400 <= status < 600 else 502, code="remote_error",
                           upstream_status=status)
    try:
        return payload["choices"][0]["message"].get("content") or ""
    except (KeyError, IndexError, TypeError) as exc:
        raise BackendError(f"{url} answered with no choices[0].message", status=502) from exc


def _remote_envelope(url: str, body: dict, *, api_key: str | None) -> dict:
    status, payload = _post_json(url, body, api_key=api_key)
    if status == 404 and not (isinstance(payload, dict) and "success" in payload):
        raise BackendError(f"{url} does not exist: the server at this base_url has no estimator endpoint",
                           status=404, code="not_found", upstream_status=404)
    if status != 200 or not isinstance(payload, dict) or not payload.get("success"):
        raise BackendError(f"{url} answered {status}: {_error_message(payload)}",
                           status=status if 400 <= status < 600 else 502, code="remote_error",
                           upstream_status=status)
    data = payload.get("data")
    return data if isinstance(data, dict) else {"data": data}
