"""An organization's own model server over gRPC: OrgLLMService.RunInference(RunInferenceRequest).

Config: {"target": "host:port", "org_id": "...", "model_id": "..." (default: the requested
model), "timeout_s": 60, "tls": false}. Messages are in inference/protos/orgllm.proto.
"""

from __future__ import annotations

from typing import Any

from inference.backends.grpc_common import GrpcBackend, check_config
from inference.backends.grpc_messages import orgllm_answer, orgllm_request
from inference.grpc_gen import orgllm_pb2, orgllm_pb2_grpc


class OrgLLMBackend(GrpcBackend):
    kind = "orgllm_grpc"

    def __init__(self, *, target: str, org_id: str = "", model_id: str | None = None,
                 timeout_s: float | None = None, tls: bool = False, internal: bool = False):
        super().__init__(target=target, timeout_s=timeout_s, tls=tls, internal=internal)
        self.org_id = org_id
        self.model_id = model_id

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> OrgLLMBackend:
        check_config(config, kind=cls.kind, allowed={"target", "org_id", "model_id", "timeout_s", "tls"})
        return cls(target=config["target"], org_id=str(config.get("org_id") or ""),
                   model_id=config.get("model_id"), timeout_s=config.get("timeout_s"),
                   tls=bool(config.get("tls")), internal=config.get("internal") is True)

    def stub(self, channel: Any) -> orgllm_pb2_grpc.OrgLLMServiceStub:
        return orgllm_pb2_grpc.OrgLLMServiceStub(channel)

    def call(self, stub: orgllm_pb2_grpc.OrgLLMServiceStub) -> Any:
        return stub.RunInference

    def build_request(self, input_data: dict, *, session_id: str, frame_ptr: bytes,
                      model: str) -> orgllm_pb2.RunInferenceRequest:
        return orgllm_request(input_data, org_id=self.org_id, model_id=self.model_id or model,
                              session_id=session_id, seq_no=self.next_seq_no(session_id), frame_ptr=frame_ptr)

    def read_reply(self, reply: orgllm_pb2.RunInferenceResponse) -> tuple[str, dict[str, int] | None]:
        return orgllm_answer(reply)
