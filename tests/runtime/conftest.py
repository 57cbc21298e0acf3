"""The runtime's transports in-process (channels' communicators on webapp.asgi), as tests/gateway does."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from channels.testing import HttpCommunicator, WebsocketCommunicator

from inference import metrics
from webapp.asgi import application


@pytest.fixture(autouse=True)
def _no_metrics_left_behind():
    yield
    metrics.discard_pending()


class Socket:
    """One /ws/runtime/ connection; `ask` sends a request and returns its packets up to the finishing one."""

    def __init__(self, communicator: WebsocketCommunicator):
        self.communicator = communicator
        self.others: list[dict[str, Any]] = []

    async def send(self, frame: dict[str, Any] | str) -> None:
        await self.communicator.send_to(text_data=frame if isinstance(frame, str) else json.dumps(frame))

    async def receive(self, wait_s: float = 10) -> dict[str, Any]:
        return json.loads(await self.communicator.receive_from(timeout=wait_s))

    async def packets(self, request_id: Any, wait_s: float = 10) -> list[dict[str, Any]]:
        packets = []
        while True:
            packet = await self.receive(wait_s)
            if packet.get("id") != request_id:
                self.others.append(packet)
                continue
            packets.append(packet)
            if packet["finish"]:
                return packets

    async def ask(self, request_id: Any = "r1", wait_s: float = 10, **frame: Any) -> list[dict[str, Any]]:
        await self.send({"id": request_id, **frame})
        return await self.packets(request_id, wait_s)

    async def close(self) -> None:
        await self.communicator.disconnect()


async def open_socket(key: str | None = None) -> Socket:
    headers = [(b"origin", b"http://testserver")]
    if key is not None:
        headers.append((b"authorization", f"Bearer {key}".encode()))
    communicator = WebsocketCommunicator(application, "/ws/runtime/", headers=headers)
    connected, _ = await communicator.connect()
    assert connected
    return Socket(communicator)


async def post(key: str | None, body: Any) -> tuple[int, dict[str, Any]]:
    headers = [(b"content-type", b"application/json")]
    if key is not None:
        headers.append((b"authorization", f"Bearer {key}".encode()))
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    communicator = HttpCommunicator(application, "POST", "/v1/runtime", body=raw, headers=headers)
    response = await communicator.get_response(timeout=10)
    return response["status"], orjson.loads(response["body"])
