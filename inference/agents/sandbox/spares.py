"""A started, unused sandbox process kept ready per set of limits, so a session's start does not wait
for one to spawn: bubblewrap's namespaces (the network one above all) take 15 ms to make on an idle
machine and 40 ms or more on a busy one, while taking a ready process takes about 2 ms.

A spare is a one-worker Monty pool whose worker is already spawned. It serves exactly one session and
then ends with it, like any other: a spare is only a process started early, never a process reused.
After each session takes its process, a new spare is started for the next one. Spares belong to the
process that started them (a forked child starts its own) and die with it (bwrap --die-with-parent).
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

from pydantic_monty import AsyncMonty, MontyError

from inference.agents.sandbox.limits import SandboxLimits

_lock = threading.Lock()
_spares: dict[tuple[str, float], tuple[int, AsyncMonty]] = {}


def _key(script: Path, limits: SandboxLimits) -> tuple[str, float]:
    return str(script), limits.step_wall_time_s


async def _started_pool(script: Path, limits: SandboxLimits) -> AsyncMonty:
    # One worker, one checkout: the process is one session's alone and is never handed to another.
    pool = AsyncMonty(binary_path=script, min_processes=1, max_processes=1, max_checkouts_per_worker=1,
                      request_timeout=limits.step_wall_time_s + 10, turn_duration_limit_grace=None,
                      feed_duration_limit_grace=1.0)
    await pool.__aenter__()  # spawns the worker in the background and returns
    return pool


async def take(script: Path, limits: SandboxLimits) -> tuple[AsyncMonty, bool]:
    """An entered one-worker pool for these limits, and whether it is a spare (its worker started
    earlier) rather than one started now. The caller owns it and exits it when its session ends."""
    with _lock:
        spare = _spares.pop(_key(script, limits), None)
    if spare is not None and spare[0] == os.getpid():
        return spare[1], True
    return await _started_pool(script, limits), False


async def replenish(script: Path, limits: SandboxLimits) -> None:
    """Start the next session's spare (after this one has its process, so the two do not compete)."""
    key = _key(script, limits)
    with _lock:
        if key in _spares and _spares[key][0] == os.getpid():
            return
    pool = await _started_pool(script, limits)
    with _lock:
        if key not in _spares or _spares[key][0] != os.getpid():
            _spares[key] = (os.getpid(), pool)
            return
    await discard(pool)  # another session replenished first


async def discard(pool: AsyncMonty) -> None:
    with contextlib.suppress(MontyError, OSError):
        await pool.__aexit__(None, None, None)


async def clear() -> None:
    """End every spare of this process (the next session starts its process itself)."""
    with _lock:
        pools = [pool for pid, pool in _spares.values() if pid == os.getpid()]
        _spares.clear()
    for pool in pools:
        await discard(pool)
