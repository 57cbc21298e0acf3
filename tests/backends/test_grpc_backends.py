"""The AIOS and OrgLLM gRPC backends against real gRPC servers on loopback."""

from __future__ import annotations

import asyncio
import json

import pytest

from inference.backends.aios_grpc import AIOSBackend
from inference.backends.base import BackendError, ChatRequest, UnsupportedFeature
from inference.backends.factory import backend_for
from inference.backends.grpc_common import close_aio_channels
from inference.backends.grpc_messages import text_from_data
from inference.backends.orgllm_grpc import OrgLLMBackend


def chat(text: str, **kwargs) -> ChatRequest:
    return ChatRequest(messages=[{"role": "user", "content": text}], model="summarizer", **kwargs)


async def collect(backend, request):
    deltas = [d async for d in backend.stream_chat(request)]
    await close_aio_channels()
    return deltas


async def test_aios_sends_the_packet_fields_the_reference_names(grpc_server):
    backend = AIOSBackend.from_config({"target": grpc_server.target, "block_id": "aios-block-7"})
    request = chat("hello", temperature=0.3,
                   extra={"session_id": "sess-1", "frame_ptr": {"framedb_id": "db1", "key": "k9"}})
    deltas = await collect(backend, request)
    await collect(backend, chat("again", extra={"session_id": "sess-1"}))
    await collect(backend, chat("other", extra={"session_id": "sess-2"}))

    first, second, third = grpc_server.recorder.requests
    assert first.block_id == "aios-block-7"
    assert first.session_id == "sess-1"
    assert (first.seq_no, second.seq_no, third.seq_no) == (1, 2, 1)
    assert json.loads(first.frame_ptr) == {"framedb_id": "db1", "key": "k9"}
    data = json.loads(first.data)
    assert data["text"] == "hello"
    assert data["messages"] == [{"role": "user", "content": "hello"}]
    assert data["temperature"] == 0.3
    assert first.ts > 1_700_000_000
    assert first.query_parameters == ""
    assert [d.content for d in deltas] == ["HELLO"]
    assert deltas[-1].finish_reason == "stop"
    assert deltas[-1].usage["completion_tokens"] == 1


async def test_aios_uses_the_requested_model_when_no_block_id_is_configured(grpc_server):
    backend = AIOSBackend.from_config({"target": grpc_server.target})
    await collect(backend, chat("x"))
    assert grpc_server.recorder.requests[0].block_id == "summarizer"


def test_aios_sync_run_inference_passes_session_and_frame_ptr(grpc_server):
    backend = AIOSBackend.from_config({"target": grpc_server.target, "block_id": "b1"})
    assert backend.run_inference({"text": "abc"}, session_id="s", frame_ptr=b"\x00\x01raw") == "ABC"
    assert backend.run_inference({"text": "def"}, session_id="s") == "DEF"
    first, second = grpc_server.recorder.requests
    assert first.frame_ptr == b"\x00\x01raw"
    assert json.loads(first.data) == {"text": "abc"}
    assert (first.seq_no, second.seq_no) == (1, 2)


@pytest.mark.parametrize("data, text", [
    ('"plain json string"', "plain json string"),
    ('{"text": "from text"}', "from text"),
    ('{"content": "from content"}', "from content"),
    ('{"choices": [{"message": {"role": "assistant", "content": "from choices"}}]}', "from choices"),
    ("not json at all", "not json at all"),
    ('{"score": 0.9}', '{"score": 0.9}'),
])
def test_answer_text_is_read_from_every_accepted_data_shape(data, text):
    assert text_from_data(data) == text


async def test_aios_reads_an_openai_like_answer(grpc_server):
    grpc_server.recorder.reply = json.dumps({"choices": [{"message": {"content": "Paris."}}]})
    backend = AIOSBackend.from_config({"target": grpc_server.target})
    deltas = await collect(backend, chat("capital?"))
    assert deltas[0].content == "Paris."


async def test_orgllm_sends_run_inference_request_fields(grpc_server):
    backend = OrgLLMBackend.from_config({"target": grpc_server.target, "org_id": "acme", "model_id": "acme-7b"})
    deltas = await collect(backend, chat("hi there", max_tokens=12, stop=["\n"],
                                          extra={"session_id": "conv-9"}))
    await collect(backend, chat("more", extra={"session_id": "conv-9"}))
    first, second = grpc_server.recorder.requests
    assert (first.org_id, first.model_id, first.session_id) == ("acme", "acme-7b", "conv-9")
    assert (first.seq_no, second.seq_no) == (1, 2)
    assert json.loads(first.parameters) == {"max_tokens": 12, "stop": ["\n"]}
    data = json.loads(first.data)
    assert data["text"] == "hi there" and "max_tokens" not in data
    assert deltas[0].content == "HI THERE"
    # The server's own counts win over the word estimate.
    assert deltas[-1].usage == {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}


def test_orgllm_sync_run_inference(grpc_server):
    backend = OrgLLMBackend.from_config({"target": grpc_server.target, "model_id": "m"})
    assert backend.run_inference({"text": "sync"}, session_id="a") == "SYNC"


async def test_cancelling_the_consumer_cancels_the_rpc_on_the_server(grpc_server):
    backend = AIOSBackend.from_config({"target": grpc_server.target})

    async def consume():
        async for _ in backend.stream_chat(chat("hang")):
            pass

    task = asyncio.create_task(consume())
    assert await asyncio.to_thread(grpc_server.recorder.started.wait, 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await asyncio.to_thread(grpc_server.recorder.cancelled.wait, 2), "server never saw the cancel"
    await close_aio_channels()


async def test_a_deadline_becomes_a_504(grpc_server):
    backend = AIOSBackend.from_config({"target": grpc_server.target, "timeout_s": 0.2})
    with pytest.raises(BackendError) as caught:
        await collect(backend, chat("hang"))
    assert caught.value.status == 504
    assert "DEADLINE_EXCEEDED" in caught.value.message


async def test_the_servers_rejection_is_a_400_with_its_message(grpc_server):
    backend = OrgLLMBackend.from_config({"target": grpc_server.target})
    with pytest.raises(BackendError) as caught:
        await collect(backend, chat("reject"))
    assert caught.value.status == 400
    assert "the block cannot read this input" in caught.value.message


async def test_an_unreachable_target_is_a_502():
    backend = AIOSBackend.from_config({"target": "127.0.0.1:1", "timeout_s": 2})
    with pytest.raises(BackendError) as caught:
        await collect(backend, chat("x"))
    assert caught.value.status in (502, 504)
    assert "127.0.0.1:1" in caught.value.message


async def test_n_greater_than_one_is_refused(grpc_server):
    backend = AIOSBackend.from_config({"target": grpc_server.target})
    with pytest.raises(UnsupportedFeature):
        await collect(backend, chat("x", n=2))
    assert grpc_server.recorder.requests == []


@pytest.mark.parametrize("backend_type, config, fragment", [
    ("aios_grpc", {}, '"target": "host:port"'),
    ("aios_grpc", {"target": "nohostport"}, '"target": "host:port"'),
    ("aios_grpc", {"target": "h:1", "blockid": "x"}, "unknown keys: ['blockid']"),
    ("orgllm_grpc", {"target": "h:1", "timeout_s": -1}, "positive number"),
])
def test_bad_grpc_configs_give_clear_errors(backend_type, config, fragment):
    with pytest.raises(BackendError) as caught:
        backend_for(block_id=f"bad-{backend_type}-{fragment}", backend_type=backend_type, config=config)
    assert fragment in caught.value.message
    assert caught.value.code == "backend_misconfigured"


def test_check_execute_reports_reachability(grpc_server):
    assert AIOSBackend.from_config({"target": grpc_server.target}).check_execute({})[0] is True
    ok, details = AIOSBackend.from_config({"target": "127.0.0.1:1", "timeout_s": 0.3}).check_execute({})
    assert ok is False and details["status"] == "unreachable"
