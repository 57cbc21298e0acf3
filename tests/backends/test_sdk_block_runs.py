"""Running a registry block by id, what the SDK's KnownLLMs.run_ai_inference and estimate call: in this
process (inference.sdk.in_process) or on a server (inference.sdk.inference)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from inference.backends.base import BackendError
from inference.sdk import in_process
from inference.sdk import inference as remote
from registry.models import Block
from tests.factories import BlockFactory


@pytest.fixture
def reverse_block(org):
    return BlockFactory(organization=org, block_id="reverse-llm")


def test_it_runs_a_python_block_in_process(reverse_block):
    assert in_process.run_ai_inference(block_id="reverse-llm", input_data={"text": "hello world"},
                                     session_id="session-001", frame_ptr=b"") == "dlrow olleh"


def test_an_unknown_block_is_a_404(db):
    with pytest.raises(in_process.BlockNotFound) as caught:
        in_process.run_ai_inference(block_id="no-such-block", input_data={"text": "x"})
    assert caught.value.status == 404
    assert "'no-such-block'" in caught.value.message


def test_a_disabled_block_is_not_run(reverse_block):
    Block.objects.filter(pk=reverse_block.pk).update(enabled=False)
    with pytest.raises(in_process.BlockNotFound):
        in_process.run_ai_inference(block_id="reverse-llm", input_data={"text": "x"})


def test_input_data_must_be_a_dict(reverse_block):
    with pytest.raises(BackendError, match="input_data must be a dict"):
        in_process.run_ai_inference(block_id="reverse-llm", input_data="hello")


def test_an_in_process_run_is_below_access_control_and_runs_another_orgs_private_block(outsider, org):
    # In-process runs are for this server's own code: organization checks belong to the
    # gateway (and to remote mode, where the server checks the key). This pins that contract.
    BlockFactory(organization=org, block_id="acme-private", visibility=Block.PRIVATE)
    assert in_process.run_ai_inference(block_id="acme-private", input_data={"text": "abc"}) == "cba"


def test_it_passes_session_and_frame_ptr_to_a_grpc_block(org, grpc_server):
    BlockFactory(organization=org, block_id="aios-remote", backend_type="aios_grpc",
                 backend_config={"target": grpc_server.target})
    frame = json.dumps({"framedb_id": "f1", "key": "frame-42"}).encode()
    text = in_process.run_ai_inference(block_id="aios-remote", input_data={"text": "big input"},
                                     session_id="session-123", frame_ptr=frame)
    in_process.run_ai_inference(block_id="aios-remote", input_data={"text": "next"}, session_id="session-123")
    assert text == "BIG INPUT"
    first, second = grpc_server.recorder.requests
    assert first.block_id == "aios-remote"
    assert (first.session_id, first.frame_ptr) == ("session-123", frame)
    assert (first.seq_no, second.seq_no) == (1, 2)


def test_estimate_combines_check_execute_and_estimates(reverse_block):
    result = in_process.estimate(block_id="reverse-llm", session_id="s1", query={"text": "x"})
    assert result == {"block_id": "reverse-llm", "session_id": "s1", "executable": True,
                      "check": {"status": "Ready"}, "estimates_ok": True,
                      "estimates": {"estimated_latency": "1ms"}}


@pytest.mark.django_db(transaction=True)
async def test_the_async_helper_runs_a_block_without_blocking():
    from asgiref.sync import sync_to_async
    from django.db import connections

    try:
        await sync_to_async(BlockFactory)(block_id="reverse-async")
        assert await in_process.arun_ai_inference(block_id="reverse-async", input_data={"text": "loop"}) == "pool"
        with pytest.raises(in_process.BlockNotFound):
            await in_process.arun_ai_inference(block_id="missing", input_data={"text": "x"})
    finally:
        # The ORM thread's connection would otherwise outlive the test database.
        await sync_to_async(connections.close_all)()


class FakeSwitchboard(BaseHTTPRequestHandler):
    """Stands in for a remote Switchboard's HTTP API to pin the wire format the SDK sends."""

    seen: list[tuple[str, dict, str]] = []

    def do_POST(self):  # noqa: N802 - http.server's naming
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        FakeSwitchboard.seen.append((self.path, body, self.headers.get("Authorization", "")))
        if self.headers.get("Authorization") != "Bearer sk-good":
            return self._send(401, {"error": {"message": "Invalid API key", "type": "invalid_request_error",
                                              "param": None, "code": "invalid_api_key"}})
        if self.path == "/v1/chat/completions":
            text = body["messages"][-1]["content"][::-1]
            return self._send(200, {"object": "chat.completion", "choices": [
                {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]})
        if self.path == "/with-estimator/discovery/estimate":
            return self._send(200, {"success": True, "data": {"executable": True, "block_id": body["block_id"]}})
        return self._send(404, {"detail": "Not Found"})

    def _send(self, status, payload):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_switchboard():
    FakeSwitchboard.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeSwitchboard)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_remote_mode_posts_an_openai_chat_request_with_the_key(fake_switchboard):
    text = remote.run_ai_inference(block_id="reverse-llm", input_data={"text": "remote", "max_tokens": 5},
                                     session_id="s-9", frame_ptr=b'{"key": "k"}', base_url=fake_switchboard,
                                     api_key="sk-good")
    assert text == "etomer"
    path, body, auth = FakeSwitchboard.seen[0]
    assert (path, auth) == ("/v1/chat/completions", "Bearer sk-good")
    assert body == {"model": "reverse-llm", "messages": [{"role": "user", "content": "remote"}],
                    "max_tokens": 5, "session_id": "s-9", "frame_ptr": '{"key": "k"}'}


def test_remote_mode_keeps_the_servers_error_message_and_status(fake_switchboard):
    with pytest.raises(BackendError) as caught:
        remote.run_ai_inference(block_id="reverse-llm", input_data={"text": "x"}, base_url=fake_switchboard,
                                  api_key="sk-bad")
    assert caught.value.status == 401
    assert "Invalid API key" in caught.value.message


def test_remote_estimate_reads_the_envelope(fake_switchboard):
    result = remote.estimate(block_id="b1", query={"tags": ["qa"]}, base_url=f"{fake_switchboard}/with-estimator",
                               api_key="sk-good")
    assert result == {"executable": True, "block_id": "b1"}
    assert FakeSwitchboard.seen[0][1] == {"block_id": "b1", "session_id": "", "search_query": {"tags": ["qa"]}}


def test_remote_estimate_on_a_server_without_the_endpoint_says_so(fake_switchboard):
    with pytest.raises(BackendError) as caught:
        remote.estimate(block_id="b1", base_url=fake_switchboard, api_key="sk-good")
    assert caught.value.status == 404
    assert "has no estimator endpoint" in caught.value.message


def test_remote_mode_reports_an_unreachable_server():
    with pytest.raises(BackendError) as caught:
        remote.run_ai_inference(block_id="b", input_data={"text": "x"}, base_url="http://127.0.0.1:1",
                                  api_key="k")
    assert caught.value.status == 502
    assert "cannot reach" in caught.value.message
