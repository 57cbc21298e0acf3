"""The seed's gRPC inference APIs, as clients in the caller's process: AIOSInferenceAPI
(BlockInferenceService.infer) and OrgLLMInferenceAPI (OrgLLMService.RunInference).

    aios = AIOSInferenceAPI("aios.internal:50051", block_id="summarizer")
    aios.run_inference({"text": "..."}, session_id="s1")      # stateful per session_id

The messages are built and read exactly as the gateway's aios_grpc / orgllm_grpc backends do
(inference/backends/grpc_messages.py). Unlike those, nothing here applies the server's egress
policy: this is the caller's own connection. Failures raise RegistryError with the gRPC status in
the message and the HTTP status the gateway would answer with.
"""

from __future__ import annotations

from typing import Any

import grpc

from inference.backends.base import BackendError, LLMInferenceAPI
from inference.backends.grpc_messages import (
    SessionSequence,
    aios_answer,
    aios_packet,
    frame_ptr_bytes,
    orgllm_answer,
    orgllm_request,
    rpc_error,
)
from inference.grpc_gen import aios_pb2_grpc, orgllm_pb2_grpc
from inference.sdk.http import RegistryError

DEFAULT_TIMEOUT_S = 60.0
READY_TIMEOUT_S = 5.0


class _GrpcInferenceAPI(LLMInferenceAPI):
    """One unary RPC per run_inference on a channel kept for the object's life."""

    def __init__(self, target: str, *, session_id: str = "", timeout_s: float = DEFAULT_TIMEOUT_S,
                 tls: bool = False):
        self.target = target
        self.session_id = session_id
        self.timeout_s = float(timeout_s)
        self.tls = tls
        self._sessions = SessionSequence()
        self._channel: grpc.Channel | None = None

    def channel(self) -> grpc.Channel:
        if self._channel is None:
            self._channel = (grpc.secure_channel(self.target, grpc.ssl_channel_credentials()) if self.tls
                             else grpc.insecure_channel(self.target))
        return self._channel

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None

    def _message(self, input_data: dict, *, session_id: str, seq_no: int, frame_ptr: bytes) -> Any:
        raise NotImplementedError

    def _rpc(self, channel: grpc.Channel) -> Any:
        raise NotImplementedError

    def _answer(self, reply: Any) -> tuple[str, dict[str, int] | None]:
        raise NotImplementedError

    def run_inference(self, input_data: dict, *, session_id: str | None = None, frame_ptr: Any = b"") -> str:
        """The answer's text. `session_id` (default: the object's) makes the server keep state;
        `frame_ptr` is b"", or JSON {framedb_id, key} naming a large input kept elsewhere."""
        if not isinstance(input_data, dict):
            raise RegistryError("input_data must be a dict", 400)
        session = self.session_id if session_id is None else session_id
        try:
            message = self._message(input_data, session_id=session, seq_no=self._sessions.next(session),
                                    frame_ptr=frame_ptr_bytes(frame_ptr))
            reply = self._rpc(self.channel())(message, timeout=self.timeout_s)
        except grpc.RpcError as exc:
            error = rpc_error(exc, target=self.target)
            raise RegistryError(error.message, error.status) from None
        except BackendError as exc:
            raise RegistryError(exc.message, exc.status) from None
        return self._answer(reply)[0]

    def check_execute(self, query: dict) -> tuple[bool, Any]:
        """Whether the server answers at all (its channel gets ready within a few seconds)."""
        try:
            grpc.channel_ready_future(self.channel()).result(timeout=min(self.timeout_s, READY_TIMEOUT_S))
        except grpc.FutureTimeoutError:
            return False, {"status": "unreachable", "target": self.target}
        return True, {"status": "ready", "target": self.target}

    def get_current_estimates(self) -> tuple[bool, Any]:
        return True, {"target": self.target, "timeout_s": self.timeout_s}


class AIOSInferenceAPI(_GrpcInferenceAPI):
    """An AIOS-deployed block over BlockInferenceService. `query_parameters`, when given, is a
    similarity query the server uses to pick the block instead of `block_id`."""

    def __init__(self, target: str, block_id: str = "", *, query_parameters: dict | None = None, **options: Any):
        super().__init__(target, **options)
        self.block_id = block_id
        self.query_parameters = query_parameters

    def _message(self, input_data: dict, *, session_id: str, seq_no: int, frame_ptr: bytes) -> Any:
        return aios_packet(input_data, block_id=self.block_id, session_id=session_id, seq_no=seq_no,
                           frame_ptr=frame_ptr, query_parameters=self.query_parameters)

    def _rpc(self, channel: grpc.Channel) -> Any:
        return aios_pb2_grpc.BlockInferenceServiceStub(channel).infer

    def _answer(self, reply: Any) -> tuple[str, dict[str, int] | None]:
        return aios_answer(reply)


class OrgLLMInferenceAPI(_GrpcInferenceAPI):
    """An organization's own model server over OrgLLMService.RunInference (RunInferenceRequest);
    input_data's sampling fields travel in the request's `parameters`."""

    def __init__(self, target: str, model_id: str = "", *, org_id: str = "", **options: Any):
        super().__init__(target, **options)
        self.model_id = model_id
        self.org_id = org_id

    def _message(self, input_data: dict, *, session_id: str, seq_no: int, frame_ptr: bytes) -> Any:
        return orgllm_request(input_data, org_id=self.org_id, model_id=self.model_id, session_id=session_id,
                              seq_no=seq_no, frame_ptr=frame_ptr)

    def _rpc(self, channel: grpc.Channel) -> Any:
        return orgllm_pb2_grpc.OrgLLMServiceStub(channel).RunInference

    def _answer(self, reply: Any) -> tuple[str, dict[str, int] | None]:
        return orgllm_answer(reply)
