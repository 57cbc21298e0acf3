"""Where claimed nodes run in the embedded default: a thread pool in the serving process, plus the
sweeper's loop on a thread (there is no Celery beat there). With Celery the same service functions
run in worker tasks (tasks.py); the records and transitions are the same either way.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django.conf import settings
from django.db import close_old_connections, connection

log = logging.getLogger(__name__)

_pool: ThreadPoolExecutor | None = None
_sweeper: threading.Thread | None = None
_sweeps: list[Callable[[], Any]] = []
_lock = threading.Lock()


def _pool_get() -> ThreadPoolExecutor:
    global _pool
    with _lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=settings.WORKFLOW_INPROCESS_WORKERS,
                                       thread_name_prefix="workflow-node")
        return _pool


def _in_thread(function: Callable[..., Any], kwargs: dict[str, Any]) -> None:
    close_old_connections()
    try:
        function(**kwargs)
    except Exception:
        log.exception("workflow job %s(%s) failed", function.__name__, kwargs)
    finally:
        # Pool threads outlive the job: keep no connection (and no transaction) open between jobs.
        connection.close()


def submit(function: Callable[..., Any], **kwargs: Any) -> None:
    _pool_get().submit(_in_thread, function, kwargs)


def start_sweeper(sweep: Callable[[], Any]) -> None:
    """The embedded default's sweeper: one thread per process that calls every `sweep()` registered here
    (the workflows', the agent runs') every WORKFLOW_SWEEP_INTERVAL_S."""
    global _sweeper
    with _lock:
        if not settings.WORKFLOW_SWEEPER_THREAD:
            return
        if sweep not in _sweeps:
            _sweeps.append(sweep)
        if _sweeper is not None:
            return

        def loop() -> None:
            while True:
                time.sleep(settings.WORKFLOW_SWEEP_INTERVAL_S)
                with _lock:
                    sweeps = list(_sweeps)
                for each in sweeps:
                    _in_thread(each, {})

        _sweeper = threading.Thread(target=loop, name="workflow-sweeper", daemon=True)
        _sweeper.start()
