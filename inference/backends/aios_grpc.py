"""AIOS blocks over gRPC: BlockInferenceService.infer(BlockInferencePacket) -> AIOSPacket.

Config: {"target": "host:port", "block_id": "<id on the AIOS side>" (default: the
requested model), "timeout_s": 60, "tls": false, "query_parameters": {...} (a similarity
query sent instead of a block id)}. Packet fields are in inference/protos/aios.proto.
"""

from __future__ import annotations

from typing import Any

from inference.backends.grpc_common import GrpcBackend, check_config
from inference.backends.grpc_messages import aios_answer, aios_packet
from inference.grpc_gen import aios_pb2, aios_pb2_grpc


class AIOSBackend(GrpcBackend):
    kind = "aios_grpc"

    def __init__(self, *, target: str, block_id: str | None = None, timeout_s: float | None = None,
                 tls: bool = False, query_parameters: dict | None = None, internal: bool = False):
        super().__init__(target=target, timeout_s=timeout_s, tls=tls, internal=internal)
        self.block_id = block_id
        self.query_parameters = query_parameters

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> AIOSBackend:
        check_config(config, kind=cls.kind,
                     allowed={"target", "block_id", "timeout_s", "tls", "query_parameters"})
        return cls(target=config["target"], block_id=config.get("block_id"), timeout_s=config.get("timeout_s"),
                   tls=bool(config.get("tls")), query_parameters=config.get("query_parameters"),
                   internal=config.get("internal") is True)

    def stub(self, channel: Any) -> aios_pb2_grpc.BlockInferenceServiceStub:
        return aios_pb2_grpc.BlockInferenceServiceStub(channel)

    def call(self, stub: aios_pb2_grpc.BlockInferenceServiceStub) -> Any:
        return stub.infer

    def build_request(self, input_data: dict, *, session_id: str, frame_ptr: bytes,
                      model: str) -> aios_pb2.BlockInferencePacket:
        return aios_packet(input_data, block_id=self.block_id or model, session_id=session_id,
                           seq_no=self.next_seq_no(session_id), frame_ptr=frame_ptr,
                           query_parameters=self.query_parameters)

    def read_reply(self, reply: aios_pb2.AIOSPacket) -> tuple[str, dict[str, int] | None]:
        return aios_answer(reply)
