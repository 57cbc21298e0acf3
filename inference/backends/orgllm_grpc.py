"""An organization's own model server over gRPC: OrgLLMService.RunInference(RunInferenceRequest).

Config: {"target": "host:port", "org_id": "...", "model_id": "..." (default: the requested
model), "timeout_s": 60, "tls": false}. Messages are in inference/protos/orgllm.proto.
"""

from __future__ import annotations

import json
import time
from typing import Any

from inference.backends.grpc_common import GrpcBackend, check_config, text_from_data
from inference.grpc_gen import orgllm_pb2, orgllm_pb2_grpc

# input_data keys that travel in `parameters` rather than being part of the data itself.
PARAMETER_KEYS = ("max_tokens", "temperature", "top_p", "stop", "seed", "response_format")


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
        parameters = {k: input_data[k] for k in PARAMETER_KEYS if input_data.get(k) is not None}
        data = {k: v for k, v in input_data.items() if k not in PARAMETER_KEYS}
        return orgllm_pb2.RunInferenceRequest(
            org_id=self.org_id,
            model_id=self.model_id or model,
            session_id=session_id,
            seq_no=self.next_seq_no(session_id),
            data=json.dumps(data),
            parameters=json.dumps(parameters),
            frame_ptr=frame_ptr,
            ts=time.time(),
        )

    def read_reply(self, reply: orgllm_pb2.RunInferenceResponse) -> tuple[str, dict[str, int] | None]:
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
