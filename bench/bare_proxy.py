"""The thinnest possible Channels proxy, as a yardstick for bench/gateway_overhead.py.

A Channels AsyncHttpConsumer that forwards the body to BARE_PROXY_UPSTREAM with a pooled
aiohttp session and relays the answer (streamed bytes as they come), with no auth,
validation, policy or metrics. What the gateway costs beyond this is the price of its pipeline.

    BARE_PROXY_UPSTREAM=http://127.0.0.1:PORT/ok/v1/chat/completions \
        uvicorn bench.bare_proxy:application --loop uvloop --http httptools
"""

from __future__ import annotations

import os

import aiohttp
from channels.generic.http import AsyncHttpConsumer

UPSTREAM = os.environ.get("BARE_PROXY_UPSTREAM", "")
_session: aiohttp.ClientSession | None = None


class BareProxy(AsyncHttpConsumer):
    channel_layer_alias = "bare-proxy-has-no-channel-layer"

    async def handle(self, body: bytes) -> None:
        global _session
        if _session is None:
            _session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        async with _session.post(UPSTREAM, data=body, headers={"Content-Type": "application/json"}) as resp:
            content_type = resp.headers.get("Content-Type", "application/json").encode()
            if content_type.startswith(b"text/event-stream"):
                await self.send_headers(status=resp.status, headers=[(b"content-type", content_type)])
                async for chunk in resp.content.iter_any():
                    await self.send_body(chunk, more_body=True)
                await self.send_body(b"")
            else:
                await self.send_response(resp.status, await resp.read(), headers=[(b"content-type", content_type)])


application = BareProxy.as_asgi()
