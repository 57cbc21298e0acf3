"""Which engine serves a block's next request: ready, heartbeat fresh, least loaded.

Beside the backends, which choose with it: sglang.py, and the queued path's GPU queue (queued/backend.py)."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from inference.models import Engine
from registry.asyncdb import in_db_thread
from registry.ttlcache import AsyncTTLCache

# Requests this process has in flight per engine id; the engine's own load lags by a heartbeat.
inflight: Counter[int] = Counter()

# Engine rows per block, re-read at most this often: a query per request would cost more than
# the routing decision is worth. Freshness is still checked against the clock on every pick.
# Cached heartbeats only ever look older than they are (pick() checks them against the clock),
# so serving a list up to 2 s old while it refreshes never routes to a dead engine longer.
_cache: AsyncTTLCache[list[EngineChoice]] = AsyncTTLCache(ttl=2.0, refresh_after=0.5)


@dataclass(frozen=True)
class EngineChoice:
    id: int
    node: str
    endpoint: str
    capacity: int
    load: float
    last_heartbeat: float  # epoch seconds


def _ready_engines(block_id: int | str) -> list[EngineChoice]:
    """`block_id`: the block's pk (ids repeat across organizations), or a plain id for old callers."""
    stale = timezone.now() - timedelta(seconds=settings.ENGINE_HEARTBEAT_STALE_S)
    block = {"block_id": block_id} if isinstance(block_id, int) else {"block__block_id": block_id}
    rows = Engine.objects.filter(**block, state=Engine.READY, last_heartbeat__gte=stale)
    return [EngineChoice(id=e.id, node=e.node, endpoint=e.endpoint, capacity=max(e.capacity, 1),
                         load=e.load, last_heartbeat=e.last_heartbeat.timestamp()) for e in rows]


_aready_engines = in_db_thread(_ready_engines)


async def aready_engines(block_id: int | str) -> list[EngineChoice]:
    # One query per block however many requests arrive together while the cache is cold.
    return await _cache.get(block_id, lambda: _aready_engines(block_id))


def pick(engines: list[EngineChoice], *, now: float | None = None) -> EngineChoice | None:
    """Least (in-flight here + engine-reported load) per unit of capacity, among fresh engines."""
    now = time.time() if now is None else now
    fresh = [e for e in engines if now - e.last_heartbeat <= settings.ENGINE_HEARTBEAT_STALE_S]
    if not fresh:
        return None
    return min(fresh, key=lambda e: ((inflight[e.id] + e.load) / e.capacity, inflight[e.id]))


async def apick_engine(block_id: int | str) -> EngineChoice | None:
    return pick(await aready_engines(block_id))


def forget_cache() -> None:
    _cache.clear()


def engine_list_for(*, organization, block_id: str | None = None, state: str | None = None) -> list[dict]:
    """Engines of the organization's own blocks, with whether the gateway would route to them now."""
    engines = Engine.objects.filter(block__organization=organization).select_related("block").order_by(
        "block__block_id", "node", "endpoint")
    if block_id:
        engines = engines.filter(block__block_id=block_id)
    if state:
        engines = engines.filter(state=state)
    stale_before = timezone.now() - timedelta(seconds=settings.ENGINE_HEARTBEAT_STALE_S)
    return [{
        "block": e.block.block_id, "node": e.node, "gpu": e.gpu, "endpoint": e.endpoint, "state": e.state,
        "capacity": e.capacity, "load": e.load, "pid": e.pid, "restarts": e.restarts,
        "startedAt": e.started_at.isoformat(),
        "lastHeartbeat": e.last_heartbeat.isoformat() if e.last_heartbeat else None,
        "routable": e.state == Engine.READY and e.last_heartbeat is not None and e.last_heartbeat >= stale_before,
    } for e in engines]
