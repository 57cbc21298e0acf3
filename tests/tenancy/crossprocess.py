"""Runs in spawned processes: imports no Django models, only the quota engine."""

from __future__ import annotations

import asyncio

from registry.tenancy.quota import Limits, QuotaExceeded, RedisQuotaStore


def reserve_from_another_process(url: str, start, results, attempts: int, budget: int, each: int) -> None:
    async def run() -> int:
        store = RedisQuotaStore(url)
        limits = [Limits(scope="org:cross-process", token_budget=budget, budget_period="day")]

        async def one() -> int:
            try:
                await store.reserve(limits, each)
                return 1
            except QuotaExceeded:
                return 0

        return sum(await asyncio.gather(*(one() for _ in range(attempts))))

    start.wait(30)
    results.put(asyncio.run(run()))
