"""The worker process's one asyncio event loop, on its own thread.

Celery task threads hand their coroutine to this loop and wait for it, so every in-flight
request of the process is multiplexed over one loop and one pooled HTTP client: the engine
sees them all at once and its continuous batching keeps working.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any

import uvloop

from inference.backends.openai_compat import close_sessions

_loop: asyncio.AbstractEventLoop | None = None
_lock = threading.Lock()


def worker_loop() -> asyncio.AbstractEventLoop:
    global _loop
    with _lock:
        if _loop is None or _loop.is_closed():
            # The same loop the gateway runs under uvicorn: less CPU per token relayed.
            loop = uvloop.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="inference-loop", daemon=True)
            thread.start()
            _loop = loop
        return _loop


def run_on_worker_loop(coro: Coroutine[Any, Any, Any], timeout: float | None = None) -> Any:
    """Run `coro` on the shared loop from a task thread; cancel it if this thread gives up."""
    future = asyncio.run_coroutine_threadsafe(coro, worker_loop())
    try:
        return future.result(timeout)
    except BaseException:
        future.cancel()
        raise


async def _close_clients() -> None:
    await close_sessions()


def close_worker_loop() -> None:
    """At worker shutdown: close the loop's pooled HTTP connections, then the loop."""
    global _loop
    with _lock:
        loop, _loop = _loop, None
    if loop is None or loop.is_closed():
        return
    try:
        asyncio.run_coroutine_threadsafe(_close_clients(), loop).result(5)
    finally:
        loop.call_soon_threadsafe(loop.stop)
