"""The one way async code reaches the ORM: `in_db_thread(function)`.

Write the database work as a plain function and await `in_db_thread(function)(...)`: it runs on
one of this module's ORM threads (asgiref's `sync_to_async` with `thread_sensitive=False` on a
pool of DB_THREADS), after closing a connection that the database dropped or that outlived
CONN_MAX_AGE. Each thread keeps its own connection, so the pool also bounds how many connections
the process's async code holds.

Not Django's async ORM methods (`aget`, `acreate`, ...) nor channels' `database_sync_to_async`:
both run every call on asgiref's one shared thread, so concurrent requests (the gateway at
concurrency 32, 64 queued tasks arriving on a worker together) wait for each other's queries
there. tests/test_layers.py fails if either, or a bare `sync_to_async`, appears in the project's
code outside this module (tests may use them).
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

from asgiref.sync import sync_to_async
from django.db import close_old_connections, connections

P = ParamSpec("P")
R = TypeVar("R")

# asyncio's own default for its executor.
DB_THREADS = min(32, (os.cpu_count() or 1) + 4)
_threads = ThreadPoolExecutor(max_workers=DB_THREADS, thread_name_prefix="orm")


def in_db_thread(function: Callable[P, R]) -> Callable[P, Coroutine[Any, Any, R]]:
    """`function` as a coroutine function that runs it on an ORM thread with a usable connection."""

    @functools.wraps(function)
    def with_usable_connection(*args: P.args, **kwargs: P.kwargs) -> R:
        close_old_connections()
        return function(*args, **kwargs)

    return sync_to_async(with_usable_connection, thread_sensitive=False, executor=_threads)


def close_thread_connections(timeout: float = 10.0) -> None:
    """Close every ORM thread's connection (the test suite does, so its database can be dropped).

    A connection belongs to its thread, so each thread closes its own: one task per thread, all
    held at a barrier until every thread has one.
    """
    barrier = threading.Barrier(DB_THREADS)

    def close() -> None:
        barrier.wait(timeout)
        connections.close_all()

    for future in [_threads.submit(close) for _ in range(DB_THREADS)]:
        future.result()
