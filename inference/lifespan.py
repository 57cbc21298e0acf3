"""ASGI lifespan for the serving process: tune the garbage collector when the server starts; write
the metrics still in memory and close pooled upstream connections when it stops.

uvicorn re-raises SIGTERM after its shutdown, so atexit hooks never run there; the lifespan
shutdown event (served with `--lifespan on`) is the one reliable place.
"""

from __future__ import annotations

import gc
import logging
import threading

from django.conf import settings

from inference import metrics, request_log
from inference.backends.openai_compat import close_sessions

log = logging.getLogger(__name__)


def tune_gc_for_serving() -> None:
    """Keep the collector's pauses out of the requests' tail (bench/RESULTS.md, "Tail latency").

    Django, DRF, Channels and aiohttp leave ~145,000 tracked objects after startup, and a full
    collection walks all of them: ~100 ms of CPU on a 2-core machine, every few seconds at
    concurrency 32, because each young collection promotes the objects of the requests in flight.
    That pause was the p99. Frozen, the startup objects are never walked again; with the youngest
    generation collected after SERVER_GC_THRESHOLD net new objects instead of 700, the churn of
    requests in flight (allocated and freed by reference counting) no longer triggers collections
    at all, while cyclic garbage is still collected after at most that many objects.

    Only a server on the main thread owns the process (uvicorn's CLI, `make run`, the Docker image);
    one started in a thread of another program (the test suite's live servers) leaves its collector
    as that program set it.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    if settings.SERVER_GC_THRESHOLD > 0:
        _, middle, oldest = gc.get_threshold()
        gc.set_threshold(settings.SERVER_GC_THRESHOLD, middle, oldest)
    if settings.SERVER_GC_FREEZE:
        # Collect first, or the import-time garbage would be frozen (kept) for good.
        gc.collect()
        gc.freeze()


async def application(scope, receive, send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            tune_gc_for_serving()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            try:
                await metrics.aflush()
            except Exception:
                log.exception("metrics flush at shutdown failed")
            try:
                await request_log.aflush()
            except Exception:
                log.exception("request log flush at shutdown failed")
            await close_sessions()
            await send({"type": "lifespan.shutdown.complete"})
            return
