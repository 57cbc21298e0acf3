"""The SDK's gRPC inference APIs (AIOSInferenceAPI, OrgLLMInferenceAPI) against real gRPC servers on loopback."""

from __future__ import annotations

import json
import socket

import pytest

from inference.sdk import AIOSInferenceAPI, KnownLLMs, OrgLLMInferenceAPI, RegistryError


def test_aios_sends_the_seeds_packet_numbered_per_session(grpc_server):
    aios = AIOSInferenceAPI(grpc_server.target, block_id="aios-block-7", session_id="sess-1")
    assert aios.run_inference({"text": "hello"}, frame_ptr={"framedb_id": "db1", "key": "k9"}) == "HELLO"
    assert aios.run_inference({"text": "again"}) == "AGAIN"
    assert aios.run_inference({"text": "other"}, session_id="sess-2") == "OTHER"
    first, second, third = grpc_server.recorder.requests
    assert (first.block_id, first.session_id, json.loads(first.data)) == ("aios-block-7", "sess-1", {"text": "hello"})
    assert json.loads(first.frame_ptr) == {"framedb_id": "db1", "key": "k9"}
    assert [(r.session_id, r.seq_no) for r in (first, second, third)] == [("sess-1", 1), ("sess-1", 2), ("sess-2", 1)]
    assert first.ts > 1_700_000_000 and first.query_parameters == ""
    aios.close()


def test_orgllm_sends_sampling_fields_as_parameters(grpc_server):
    org_llm = OrgLLMInferenceAPI(grpc_server.target, model_id="summarizer", org_id="acme")
    assert org_llm.run_inference({"text": "abc", "temperature": 0.2, "max_tokens": 9}) == "ABC"
    request = grpc_server.recorder.requests[0]
    assert (request.model_id, request.org_id, request.seq_no) == ("summarizer", "acme", 1)
    assert json.loads(request.data) == {"text": "abc"}
    assert json.loads(request.parameters) == {"temperature": 0.2, "max_tokens": 9}
    org_llm.close()


def test_a_refused_rpc_is_a_registry_error_with_the_status_the_gateway_would_answer(grpc_server):
    aios = AIOSInferenceAPI(grpc_server.target, block_id="b")
    with pytest.raises(RegistryError) as refused:
        aios.run_inference({"text": "reject"})
    assert refused.value.status == 400
    assert "INVALID_ARGUMENT: the block cannot read this input" in refused.value.message
    with pytest.raises(RegistryError, match="frame_ptr must be bytes"):
        aios.run_inference({"text": "x"}, frame_ptr=3)
    with pytest.raises(RegistryError, match="input_data must be a dict"):
        aios.run_inference("x")
    aios.close()


def test_check_execute_says_whether_the_server_answers(grpc_server):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    assert AIOSInferenceAPI(grpc_server.target).check_execute({}) == (True, {"status": "ready",
                                                                             "target": grpc_server.target})
    nobody = OrgLLMInferenceAPI(f"127.0.0.1:{closed_port}", timeout_s=0.5)
    assert nobody.check_execute({}) == (False, {"status": "unreachable", "target": f"127.0.0.1:{closed_port}"})
    assert nobody.get_current_estimates() == (True, {"target": f"127.0.0.1:{closed_port}", "timeout_s": 0.5})


def test_a_grpc_api_is_a_known_llms_inference_object(grpc_server):
    llms = KnownLLMs(base_url="http://127.0.0.1:9")  # never called: the block runs its own object
    llms.create_custom_llm_block(id="aios", description="AIOS block", tags=["aios"], input_protocols=["text/plain"],
                                 output_protocols=["text/plain"],
                                 block_inference_object=AIOSInferenceAPI(grpc_server.target, block_id="b1"))
    assert llms.run_ai_inference(name="aios", input_data={"text": "seed"}, session_id="s-1") == "SEED"
