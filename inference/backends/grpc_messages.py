"""The AIOS and OrgLLM gRPC messages, built and read in one place for both of their clients: the
gateway's backends (aios_grpc.py, orgllm_grpc.py) and the SDK's AIOSInferenceAPI and
OrgLLMInferenceAPI (inference/sdk/grpc_inference.py). Needs grpc and protobuf only, never Django:
the SDK runs in plain scripts. Field numbers and meanings: inference/protos/*.proto.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from typing import Any

import grpc

from inference.backends.base import BackendError
from inference.grpc_gen import aios_pb2, orgllm_pb2

# input_data keys that travel in an OrgLLM request's `parameters` rather than in its data.
ORGLLM_PARAMETER_KEYS = ("max_tokens", "temperature", "top_p", "stop", "seed", "response_format")


class SessionSequence:
    """(session_id, seq_no) names one task: numbering starts at 1 per session, per client."""

    def __init__(self) -> None:
        self._counters: dict[str, itertools.count] = {}
        self._lock = threading.Lock()

    def next(self, session_id: str) -> int:
        with self._lock:
            return next(self._counters.setdefault(session_id, itertools.count(1)))


def aios_packet(input_data: dict, *, block_id: str, session_id: str, seq_no: int, frame_ptr: bytes,
                query_parameters: dict | None = None) -> aios_pb2.BlockInferencePacket:
    return aios_pb2.BlockInferencePacket(
        block_id=block_id,
        session_id=session_id,
        seq_no=seq_no,
        frame_ptr=frame_ptr,
        data=json.dumps(input_data),
        query_parameters=json.dumps(query_parameters) if query_parameters else "",
        ts=time.time(),
    )


def aios_answer(reply: aios_pb2.AIOSPacket) -> tuple[str, dict[str, int] | None]:
    """(text, usage): an AIOS packet counts no tokens."""
    return text_from_data(reply.data), None


def orgllm_request(input_data: dict, *, org_id: str, model_id: str, session_id: str, seq_no: int,
                   frame_ptr: bytes) -> orgllm_pb2.RunInferenceRequest:
    parameters = {k: input_data[k] for k in ORGLLM_PARAMETER_KEYS if input_data.get(k) is not None}
    data = {k: v for k, v in input_data.items() if k not in ORGLLM_PARAMETER_KEYS}
    return orgllm_pb2.RunInferenceRequest(
        org_id=org_id,
        model_id=model_id,
        session_id=session_id,
        seq_no=seq_no,
        data=json.dumps(data),
        parameters=json.dumps(parameters),
        frame_ptr=frame_ptr,
        ts=time.time(),
    )


def orgllm_answer(reply: orgllm_pb2.RunInferenceResponse) -> tuple[str, dict[str, int] | None]:
    """(text, usage): usage when the server counted tokens and said so readably."""
    usage = None
    if reply.usage:
        try:
            counts = json.loads(reply.usage)
            prompt = int(counts.get("prompt_tokens", 0))
            completion = int(counts.get("completion_tokens", 0))
            usage = {"prompt_tokens": prompt, "completion_tokens": completion,
                     "total_tokens": prompt + completion}
        except (ValueError, TypeError, AttributeError):
            usage = None
    return text_from_data(reply.data), usage


def rpc_error(exc: grpc.RpcError, *, target: str) -> BackendError:
    code = exc.code() if hasattr(exc, "code") else None
    details = (exc.details() if hasattr(exc, "details") else None) or str(exc)
    message = f"gRPC upstream {target} answered {code.name if code else 'an error'}: {details}"
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return BackendError(message, status=504, code="upstream_timeout")
    if code == grpc.StatusCode.UNAVAILABLE:
        return BackendError(message, status=502, code="upstream_unreachable")
    if code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.OUT_OF_RANGE,
                grpc.StatusCode.FAILED_PRECONDITION):
        return BackendError(message, status=400, code="invalid_request_error")
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return BackendError(message, status=429, code="upstream_rate_limited")
    return BackendError(message, status=502, code="upstream_error")


def text_from_data(data: str) -> str:
    """The answer text: a JSON string, {"text"}, {"content"}, OpenAI-like choices, or plain text.

    Any other JSON (a block answering with structured output) is returned as it came.
    """
    try:
        parsed = json.loads(data)
    except ValueError:
        return data
    if isinstance(parsed, str):
        return parsed
    if isinstance(parsed, dict):
        for key in ("text", "content", "output", "result"):
            if isinstance(parsed.get(key), str):
                return parsed[key]
        choices = parsed.get("choices")
        if isinstance(choices, list) and choices and isinstance(choices[0], dict):
            choice = choices[0]
            message = choice.get("message") or choice.get("delta") or {}
            if isinstance(message, dict) and isinstance(message.get("content"), str):
                return message["content"]
            if isinstance(choice.get("text"), str):
                return choice["text"]
    return data


def frame_ptr_bytes(value: Any) -> bytes:
    if value is None:
        return b""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, dict):
        return json.dumps(value).encode()
    raise BackendError("frame_ptr must be bytes, a string or a {framedb_id, key} object", status=400,
                       code="invalid_request_error")
