"""What the WebSocket chat tests need of a client: a connect that passes the origin check (asyncio
or blocking), and a reader of one conversation's frames."""

from __future__ import annotations

import asyncio
import json

from websockets.asyncio.client import connect as ws_connect
from websockets.sync.client import connect as ws_connect_sync


def _origin(url: str) -> str:
    # webapp/asgi.py guards sockets with AllowedHostsOriginValidator, which wants an Origin.
    return url.split("/ws/")[0].replace("ws://", "http://")


def connect(url: str, **kwargs):
    return ws_connect(url, origin=_origin(url), **kwargs)


def connect_sync(url: str, **kwargs):
    """The blocking client, for tests that drive a server from plain (non-async) code."""
    return ws_connect_sync(url, origin=_origin(url), **kwargs)


async def frames_until_done(ws, conversation, limit: float = 5.0) -> list[dict]:
    frames = []
    async with asyncio.timeout(limit):
        while True:
            frame = json.loads(await ws.recv())
            if frame.get("id") != conversation:
                continue
            frames.append(frame)
            if frame["type"] in ("done", "error", "cancelled"):
                return frames
