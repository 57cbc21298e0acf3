"""The stop handle of an agent's calls: `AbortSignal.abort()` from any thread or task cancels every
model call registered on it, on whichever event loop it runs, so an HTTP stream is closed (and the
engine behind it stops generating) instead of being read to its end."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


class AgentAborted(Exception):
    """The agent was stopped (`stop()`) while it ran; nothing after the stop was generated or used."""

    def __init__(self, reason: str = "the agent was stopped"):
        super().__init__(reason)
        self.reason = reason


class AbortSignal:
    """One run's (or one agent's) abort flag and the in-flight calls it cancels. Thread-safe."""

    def __init__(self, *parents: AbortSignal | None) -> None:
        """`parents`: signals whose abort() aborts this one too (an agent's stop() and a run's stop)."""
        self._lock = threading.Lock()
        self._tasks: set[tuple[asyncio.AbstractEventLoop, asyncio.Task]] = set()
        self._children: set[AbortSignal] = set()
        self._parents = [p for p in parents if p is not None]
        self.aborted = False
        self.reason = ""
        for parent in self._parents:
            parent._adopt(self)

    def _adopt(self, child: AbortSignal) -> None:
        with self._lock:
            self._children.add(child)
            aborted, reason = self.aborted, self.reason
        if aborted:
            child.abort(reason)

    def release(self) -> None:
        """Forget this signal in its parents (its run ended)."""
        for parent in self._parents:
            with parent._lock:
                parent._children.discard(self)

    def abort(self, reason: str = "the agent was stopped") -> None:
        with self._lock:
            if self.aborted:
                return
            self.aborted = True
            self.reason = reason
            tasks = list(self._tasks)
            children = list(self._children)
        for child in children:
            child.abort(reason)
        for loop, task in tasks:
            if not loop.is_closed():
                loop.call_soon_threadsafe(task.cancel)

    def check(self) -> None:
        """Raise AgentAborted when the signal was aborted (called between steps)."""
        if self.aborted:
            raise AgentAborted(self.reason)

    async def run(self, work: Awaitable[T]) -> T:
        """`work` as a task this signal can cancel; AgentAborted when it did. The caller's own task is
        never cancelled by abort(), so its cleanup (recording a run, closing streams) still runs."""
        self.check()
        loop = asyncio.get_running_loop()
        task = asyncio.ensure_future(work)
        entry = (loop, task)
        with self._lock:
            self._tasks.add(entry)
        try:
            try:
                await asyncio.wait({task})
            except asyncio.CancelledError:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                raise
        finally:
            with self._lock:
                self._tasks.discard(entry)
        if task.cancelled():
            if self.aborted:
                raise AgentAborted(self.reason)
            raise asyncio.CancelledError()
        return task.result()
