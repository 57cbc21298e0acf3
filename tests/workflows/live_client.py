"""Clients of a run's live feed, through the real ASGI application: SSE read chunk by chunk as it is
sent (HttpCommunicator would wait for the whole body), and the WebSocket."""

from __future__ import annotations

import json
from typing import Any

from asgiref.testing import ApplicationCommunicator
from channels.testing import WebsocketCommunicator

from webapp.asgi import application


def _headers(key: str | None, extra: dict[str, str] | None = None) -> list[tuple[bytes, bytes]]:
    headers = {"host": "testserver", "accept": "text/event-stream", **(extra or {})}
    if key is not None:
        headers["authorization"] = f"Bearer {key}"
    return [(k.encode(), v.encode()) for k, v in headers.items()]


class EventStream:
    """GET /api/workflow-runs/<id>/events as a browser's EventSource would."""

    def __init__(self, run_id: int | str, key: str | None, *, last_event_id: int | None = None, query: str = "",
                 feed: str = "workflow-runs"):
        """`feed`: "workflow-runs", or "agent-runs" for an agent run's feed (the same wire format)."""
        extra = {"last-event-id": str(last_event_id)} if last_event_id is not None else {}
        path = f"/api/{feed}/{run_id}/events"
        self.communicator = ApplicationCommunicator(application, {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
            "path": path, "raw_path": path.encode(),
            "query_string": query.encode(), "root_path": "", "headers": _headers(key, extra),
            "client": ("127.0.0.1", 40000), "server": ("testserver", 80)})
        self.status: int | None = None
        self.headers: dict[str, str] = {}
        self.buffer = b""
        self.done = False

    async def open(self, wait_s: float = 10) -> int:
        await self.communicator.send_input({"type": "http.request", "body": b"", "more_body": False})
        start = await self.communicator.receive_output(wait_s)
        self.status = start["status"]
        self.headers = {k.decode().lower(): v.decode() for k, v in start.get("headers", [])}
        return self.status

    async def body(self, wait_s: float = 10) -> bytes:
        """The whole (non-streamed) body, for a refusal."""
        while not self.done:
            await self._more(wait_s)
        return self.buffer

    async def _more(self, wait_s: float) -> None:
        message = await self.communicator.receive_output(wait_s)
        self.buffer += message.get("body", b"")
        self.done = not message.get("more_body", False)

    async def events(self, *, until: str, wait_s: float = 15) -> list[dict[str, Any]]:
        """Parsed SSE events ({"id", "event", "data"}) up to and including the first of type `until`."""
        found: list[dict[str, Any]] = []
        while True:
            while b"\n\n" in self.buffer:
                frame, self.buffer = self.buffer.split(b"\n\n", 1)
                event = _parse(frame.decode())
                if event is None:
                    continue
                found.append(event)
                if event["event"] == until:
                    return found
            if self.done:
                raise AssertionError(f"the stream ended before a {until!r} event: {found}")
            await self._more(wait_s)

    async def close(self) -> None:
        await self.communicator.send_input({"type": "http.disconnect"})
        await self.communicator.wait(timeout=5)


def _parse(frame: str) -> dict[str, Any] | None:
    event: dict[str, Any] = {"id": None, "event": "message", "data": None}
    for line in frame.split("\n"):
        field, _, value = line.partition(": ")
        if field == "id":
            event["id"] = int(value)
        elif field == "event":
            event["event"] = value
        elif field == "data":
            event["data"] = json.loads(value)
        elif field in ("retry", "") or line.startswith(":"):
            continue
    return event if event["data"] is not None else None


def run_socket(run_id: int | str, key: str | None, query: str = "", feed: str = "workflow-runs") -> WebsocketCommunicator:
    path = f"/ws/{feed}/{run_id}/events" + (f"?{query}" if query else "")
    headers = [(b"origin", b"http://testserver"), (b"host", b"testserver")]
    if key is not None:
        headers.append((b"authorization", f"Bearer {key}".encode()))
    return WebsocketCommunicator(application, path, headers=headers)


async def socket_frames(socket: WebsocketCommunicator, *, until: str, wait_s: float = 15) -> list[dict[str, Any]]:
    frames: list[dict[str, Any]] = []
    while not frames or frames[-1]["type"] != until:
        frames.append(json.loads(await socket.receive_from(timeout=wait_s)))
        if frames[-1]["type"] == "error" and until != "error":
            raise AssertionError(f"the socket refused: {frames[-1]}")
    return frames
