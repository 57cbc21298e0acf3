"""Quota and rate-limit enforcement: reserve before a call, settle or release after.

Counters live in Redis and every check-and-charge is one Lua script, so the decision is
atomic across all gateway processes: 200 concurrent callers against a budget for 50 get
exactly 50 reservations. Without REDIS_URL (the embedded default, one process) the same
operations run on an in-process table under a lock (a threading.Lock rather than an
asyncio.Lock because the critical sections never await and callers may sit on different
event loops; the semantics are identical).

Counters, per scope (an organization or one key), each only while a limit is set:
- requests in the current minute window (requests_per_minute),
- tokens in the current minute window (tokens_per_minute),
- tokens in the current budget period, a UTC day or month (token_budget).
A reservation charges 1 request and the estimated tokens (prompt + max output). Settling
charges the difference between actual and estimated tokens to the windows the
reservation was made in; releasing refunds the tokens (the request still counts: it used
the gateway). Windows are fixed (not sliding): Retry-After is the time left in the window.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
import weakref
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings

KEY_PREFIX = "sb:quota:"
REDIS_MAX_CONNECTIONS = 64

# KEYS: counters. ARGV: n, then (limit, amount, ttl) per counter.
# Checks every counter first and charges none unless all fit: one atomic decision.
RESERVE_LUA = """
local n = tonumber(ARGV[1])
for i = 1, n do
  local limit = tonumber(ARGV[2 + (i - 1) * 3])
  local amount = tonumber(ARGV[3 + (i - 1) * 3])
  local used = tonumber(redis.call('GET', KEYS[i]) or '0')
  if used + amount > limit then
    return {i, used}
  end
end
for i = 1, n do
  local amount = tonumber(ARGV[3 + (i - 1) * 3])
  local ttl = tonumber(ARGV[4 + (i - 1) * 3])
  redis.call('INCRBY', KEYS[i], amount)
  redis.call('EXPIRE', KEYS[i], ttl)
end
return {0, 0}
"""

# KEYS: token counters charged by a reservation; ARGV[1]: the signed difference.
# A counter that already expired (its window is over) is left alone; none goes below zero.
ADJUST_LUA = """
local delta = tonumber(ARGV[1])
for i = 1, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    local value = redis.call('INCRBY', KEYS[i], delta)
    if value < 0 then redis.call('SET', KEYS[i], 0, 'KEEPTTL') end
  end
end
return 1
"""


@dataclass(frozen=True)
class Limits:
    """One scope's limits; None means unlimited."""

    scope: str
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    token_budget: int | None = None
    budget_period: str = "month"

    @property
    def empty(self) -> bool:
        return self.requests_per_minute is None and self.tokens_per_minute is None and self.token_budget is None


def redis_timeouts() -> dict[str, float]:
    """For clients of short commands only: an unreachable Redis is an error within seconds, not a hang."""
    return {"socket_connect_timeout": settings.REDIS_CONNECT_TIMEOUT_S, "socket_timeout": settings.REDIS_SOCKET_TIMEOUT_S}


class QuotaExceeded(Exception):
    def __init__(self, message: str, *, code: str, retry_after: int, rule: str):
        super().__init__(message)
        self.message = message
        self.code = code
        self.retry_after = retry_after
        self.rule = rule


@dataclass
class _Counter:
    key: str
    limit: int
    amount: int
    ttl: int
    rule: str
    scope: str
    retry_after: int
    is_tokens: bool


def _period_bounds(period: str, now: datetime) -> tuple[str, datetime]:
    if period == "day":
        start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        return start.strftime("%Y%m%d"), start + timedelta(days=1)
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = (start + timedelta(days=32)).replace(day=1)
    return start.strftime("%Y%m"), end


def _counters(limits_list: list[Limits], tokens: int, now_s: float) -> list[_Counter]:
    minute = int(now_s // 60)
    minute_left = max(1, math.ceil((minute + 1) * 60 - now_s))
    now = datetime.fromtimestamp(now_s, tz=UTC)
    out: list[_Counter] = []
    for limits in limits_list:
        base = f"{KEY_PREFIX}{limits.scope}:"
        if limits.requests_per_minute is not None:
            out.append(_Counter(f"{base}rpm:{minute}", limits.requests_per_minute, 1, 120,
                                "requests_per_minute", limits.scope, minute_left, False))
        if limits.tokens_per_minute is not None:
            out.append(_Counter(f"{base}tpm:{minute}", limits.tokens_per_minute, tokens, 120,
                                "tokens_per_minute", limits.scope, minute_left, True))
        if limits.token_budget is not None:
            period_id, end = _period_bounds(limits.budget_period, now)
            left = max(1, math.ceil((end - now).total_seconds()))
            out.append(_Counter(f"{base}budget:{limits.budget_period}:{period_id}", limits.token_budget,
                                tokens, left + 3600, "token_budget", limits.scope, left, True))
    return out


def _refusal(counter: _Counter, used: int) -> QuotaExceeded:
    who = "API key" if counter.scope.startswith("key:") else "organization"
    if counter.rule == "token_budget":
        if counter.amount > counter.limit:
            message = (f"This request needs an estimated {counter.amount} tokens, more than the {who}'s "
                       f"whole token_budget of {counter.limit}.")
        else:
            message = (f"The {who}'s token_budget is used up: {used} of {counter.limit} tokens this period; "
                       f"this request needs an estimated {counter.amount}.")
        return QuotaExceeded(message, code="insufficient_quota", retry_after=counter.retry_after,
                             rule=counter.rule)
    unit = "requests" if counter.rule == "requests_per_minute" else "tokens"
    if counter.amount > counter.limit:
        message = (f"This request needs an estimated {counter.amount} tokens, more than the {who}'s "
                   f"{counter.rule} limit of {counter.limit}.")
    else:
        message = (f"Rate limit reached for the {who}: {counter.rule} {counter.limit} "
                   f"({used} {unit} used this minute). Retry after {counter.retry_after} s.")
    return QuotaExceeded(message, code="rate_limit_exceeded", retry_after=counter.retry_after,
                         rule=counter.rule)


@dataclass
class Reservation:
    store: QuotaStore
    token_keys: list[str]
    tokens: int
    # Checked and set with no await in between, so a double settle cannot charge twice.
    done: bool = False

    async def settle(self, *, prompt_tokens: int, completion_tokens: int) -> None:
        if self.done:
            return
        self.done = True
        delta = max(0, int(prompt_tokens)) + max(0, int(completion_tokens)) - self.tokens
        if delta and self.token_keys:
            await self.store.adjust(self.token_keys, delta)

    async def release(self) -> None:
        if self.done:
            return
        self.done = True
        if self.tokens and self.token_keys:
            await self.store.adjust(self.token_keys, -self.tokens)


class QuotaStore:
    async def _reserve(self, counters: list[_Counter]) -> tuple[int, int]:
        raise NotImplementedError

    async def adjust(self, keys: list[str], delta: int) -> None:
        raise NotImplementedError

    def get_many(self, keys: list[str]) -> list[int]:
        """Current counter values (sync: read by the API views, never on the gateway path)."""
        raise NotImplementedError

    async def reserve(self, limits_list: list[Limits], tokens: int) -> Reservation:
        """Charge 1 request and `tokens` to every limited counter, or raise QuotaExceeded."""
        counters = _counters([lim for lim in limits_list if not lim.empty], max(0, int(tokens)), time.time())
        token_keys = [c.key for c in counters if c.is_tokens]
        if counters:
            failed, used = await self._reserve(counters)
            if failed:
                raise _refusal(counters[failed - 1], used)
        return Reservation(store=self, token_keys=token_keys, tokens=max(0, int(tokens)))

    def remaining(self, limits: Limits) -> dict[str, dict[str, int | None]]:
        """What is left of each limit right now (for estimates and /api/usage)."""
        counters = _counters([limits], 0, time.time())
        values = self.get_many([c.key for c in counters]) if counters else []
        out: dict[str, dict[str, int | None]] = {}
        for counter, used in zip(counters, values, strict=True):
            out[counter.rule] = {"limit": counter.limit, "used": used,
                                 "remaining": max(0, counter.limit - used), "resetsInS": counter.retry_after}
        return out


class RedisQuotaStore(QuotaStore):
    def __init__(self, url: str):
        self.url = url
        # redis.asyncio connections belong to one event loop; tests and workers run several.
        self._clients: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._sync_client = None

    def _client(self):
        import redis.asyncio as aredis

        loop = asyncio.get_running_loop()
        entry = self._clients.get(loop)
        if entry is None:
            # A blocking pool makes a burst wait for a connection instead of failing.
            pool = aredis.BlockingConnectionPool.from_url(self.url, max_connections=REDIS_MAX_CONNECTIONS, timeout=10,
                                                          **redis_timeouts())
            client = aredis.Redis(connection_pool=pool)
            entry = (client, client.register_script(RESERVE_LUA), client.register_script(ADJUST_LUA))
            self._clients[loop] = entry
        return entry

    async def _reserve(self, counters: list[_Counter]) -> tuple[int, int]:
        _, reserve, _ = self._client()
        args: list[int] = [len(counters)]
        for c in counters:
            args += [c.limit, c.amount, c.ttl]
        failed, used = await reserve(keys=[c.key for c in counters], args=args)
        return int(failed), int(used)

    async def adjust(self, keys: list[str], delta: int) -> None:
        _, _, adjust = self._client()
        await adjust(keys=keys, args=[delta])

    def get_many(self, keys: list[str]) -> list[int]:
        if self._sync_client is None:
            import redis

            self._sync_client = redis.Redis.from_url(self.url, **redis_timeouts())
        return [int(v or 0) for v in self._sync_client.mget(keys)]


class MemoryQuotaStore(QuotaStore):
    """The embedded default's store: one process, so a lock gives the Lua script's atomicity."""

    def __init__(self):
        self._lock = threading.Lock()
        self._values: dict[str, tuple[int, float]] = {}

    def _get(self, key: str, now: float) -> int:
        hit = self._values.get(key)
        if hit is None or hit[1] <= now:
            self._values.pop(key, None)
            return 0
        return hit[0]

    async def _reserve(self, counters: list[_Counter]) -> tuple[int, int]:
        now = time.monotonic()
        with self._lock:
            for i, c in enumerate(counters, start=1):
                used = self._get(c.key, now)
                if used + c.amount > c.limit:
                    return i, used
            for c in counters:
                self._values[c.key] = (self._get(c.key, now) + c.amount, now + c.ttl)
        return 0, 0

    async def adjust(self, keys: list[str], delta: int) -> None:
        now = time.monotonic()
        with self._lock:
            for key in keys:
                hit = self._values.get(key)
                if hit is not None and hit[1] > now:
                    self._values[key] = (max(0, hit[0] + delta), hit[1])

    def get_many(self, keys: list[str]) -> list[int]:
        now = time.monotonic()
        with self._lock:
            return [self._get(key, now) for key in keys]


_store: QuotaStore | None = None


def quota_store() -> QuotaStore:
    global _store
    if _store is None:
        _store = RedisQuotaStore(settings.REDIS_URL) if settings.REDIS_URL else MemoryQuotaStore()
    return _store
