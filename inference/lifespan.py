"""ASGI lifespan for the serving process: write the metrics still in memory and close pooled
upstream connections when the server stops.

uvicorn re-raises SIGTERM after its shutdown, so atexit hooks never run there; the lifespan
shutdown event (served with `--lifespan on`) is the one reliable place.
"""

from __future__ import annotations

import logging

from inference import metrics
from inference.backends.openai_compat import close_sessions

log = logging.getLogger(__name__)


async def application(scope, receive, send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            try:
                await metrics.aflush()
            except Exception:
                log.exception("metrics flush at shutdown failed")
            await close_sessions()
            await send({"type": "lifespan.shutdown.complete"})
            return
