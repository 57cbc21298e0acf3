"""Real gRPC servers on loopback (port 0) standing in for AIOS and OrgLLM deployments.

Each runs a grpc.aio server on its own event loop in a thread, so both the async
gateway path and the seed's synchronous path can call it from a test.
"""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import grpc

from inference.grpc_gen import aios_pb2, aios_pb2_grpc, orgllm_pb2, orgllm_pb2_grpc


class Recorder:
    def __init__(self) -> None:
        self.requests: list[Any] = []
        self.started = threading.Event()
        self.cancelled = threading.Event()
        # What the next replies say, as the `data` string; a callable gets the request.
        self.reply: Any = None


async def _answer(recorder: Recorder, request: Any, context: grpc.aio.ServicerContext) -> str:
    recorder.requests.append(request)
    recorder.started.set()
    data = json.loads(request.data)
    if data.get("text") == "hang":
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            recorder.cancelled.set()
            raise
    if data.get("text") == "reject":
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the block cannot read this input")
    if callable(recorder.reply):
        return recorder.reply(request)
    if recorder.reply is not None:
        return recorder.reply
    return json.dumps({"text": data.get("text", "").upper()})


class AIOSServicer(aios_pb2_grpc.BlockInferenceServiceServicer):
    def __init__(self, recorder: Recorder):
        self.recorder = recorder

    async def infer(self, request, context):
        data = await _answer(self.recorder, request, context)
        return aios_pb2.AIOSPacket(session_id=request.session_id, seq_no=request.seq_no, data=data, ts=request.ts)


class OrgLLMServicer(orgllm_pb2_grpc.OrgLLMServiceServicer):
    def __init__(self, recorder: Recorder):
        self.recorder = recorder

    async def RunInference(self, request, context):  # noqa: N802 - the generated method name
        data = await _answer(self.recorder, request, context)
        return orgllm_pb2.RunInferenceResponse(session_id=request.session_id, seq_no=request.seq_no, data=data,
                                               usage=json.dumps({"prompt_tokens": 7, "completion_tokens": 3}))


class FakeGrpcServer:
    def __init__(self) -> None:
        self.recorder = Recorder()
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> FakeGrpcServer:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the fake gRPC server did not start")
        return self

    def stop(self) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def _run(self) -> None:
        self._loop.run_until_complete(self._serve())
        self._loop.close()

    async def _serve(self) -> None:
        server = grpc.aio.server()
        aios_pb2_grpc.add_BlockInferenceServiceServicer_to_server(AIOSServicer(self.recorder), server)
        orgllm_pb2_grpc.add_OrgLLMServiceServicer_to_server(OrgLLMServicer(self.recorder), server)
        self.port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        self._stop = asyncio.Event()
        self._ready.set()
        await self._stop.wait()
        await server.stop(grace=None)
