"""What the WebSocket chat tests need of a client: a connect that passes the origin check, and a
reader of one conversation's frames."""

from __future__ import annotations

import asyncio
import json

from websockets.asyncio.client import connect as ws_connect


def connect(url: str, **kwargs):
    # webapp/asgi.py guards sockets with AllowedHostsOriginValidator, which wants an Origin.
    origin = url.split("/ws/")[0].replace("ws://", "http://")
    return ws_connect(url, origin=origin, **kwargs)


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
