"""RLM mode's sandbox (issue 14, item 4): how long a session takes to start and what a code step costs.

    .venv/bin/python bench/agents.py [--sessions 40] [--steps 200]

Side by side in one run, with bubblewrap's namespaces and with the OS limits only:

  1. session start: from SandboxSession.start() to a session whose process is up and whose variables
     (a 200,000-character context) are bound, measured through its first step; p50 and p95, target
     p50 <= 50 ms. "spare ready": the process started ahead (inference/agents/sandbox/spares.py), as
     for a session that starts more than ~50 ms after the previous one did (each measured session
     lasts 150 ms); "cold": no spare, the session spawns its process (a burst of starts).
  2. a code step's overhead: run() of a trivial statement (`n = n + 1`) in a live session, so the
     time is the host -> process -> host round trip and the snapshot handling, not the code; p50 and
     p95, target p50 <= 10 ms. Also a step that makes one host call (the llm_query path), for scale.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from inference.agents.sandbox import SandboxLimits, SandboxSession, bwrap_works, spares  # noqa: E402

CONTEXT = "lorem ipsum dolor sit amet " * 7408  # ~200,000 characters


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered) * 1000, ordered[int(len(ordered) * 0.95) - 1] * 1000


async def measure(limits: SandboxLimits, sessions: int, steps: int) -> dict[str, tuple[float, float]]:
    async def echo(text: str) -> str:
        return text

    async def start_one(cold: bool) -> float:
        if cold:
            await spares.clear()
        began = time.perf_counter()
        session = await SandboxSession.start(variables={"context": CONTEXT, "n": 0}, functions={"echo": echo},
                                             limits=limits)
        await session.run("n = len(context)")
        took = time.perf_counter() - began
        await asyncio.sleep(0.15)
        await session.close()
        return took

    warm = [await start_one(cold=False) for _ in range(sessions)][1:]
    cold = [await start_one(cold=True) for _ in range(sessions)]
    step_times, call_times = [], []
    async with await SandboxSession.start(variables={"n": 0}, functions={"echo": echo}, limits=limits) as session:
        for _ in range(10):  # warm-up
            await session.run("n = n + 1")
        for _ in range(steps):
            began = time.perf_counter()
            await session.run("n = n + 1")
            step_times.append(time.perf_counter() - began)
        for _ in range(steps):
            began = time.perf_counter()
            await session.run("echo('x')")
            call_times.append(time.perf_counter() - began)
    return {"start": percentiles(warm), "cold start": percentiles(cold), "step": percentiles(step_times),
            "host call": percentiles(call_times)}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=40)
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; bubblewrap works: {bwrap_works()}")
    results = {}
    if bwrap_works():
        results["namespaces"] = await measure(SandboxLimits(namespaces="required"), args.sessions, args.steps)
    results["limits only"] = await measure(SandboxLimits(namespaces="off"), args.sessions, args.steps)
    print(f"{'':12} {'start p50':>10} {'p95':>8} {'cold p50':>9} {'p95':>8} {'step p50':>9} {'p95':>7} "
          f"{'call p50':>9}")
    for name, result in results.items():
        print(f"{name:12} {result['start'][0]:8.1f}ms {result['start'][1]:6.1f}ms {result['cold start'][0]:7.1f}ms "
              f"{result['cold start'][1]:6.1f}ms {result['step'][0]:7.2f}ms {result['step'][1]:5.2f}ms "
              f"{result['host call'][0]:7.2f}ms")
    for name, result in results.items():
        print(f"{name}: cold / spare-ready start p50 {result['cold start'][0] / result['start'][0]:.1f}x")
    if "namespaces" in results:
        ratio = results["namespaces"]["cold start"][0] / results["limits only"]["cold start"][0]
        print(f"namespaces / limits only, cold start p50: {ratio:.1f}x")
    main_result = results.get("namespaces", results["limits only"])
    print(f"targets: start p50 <= 50 ms: {'met' if main_result['start'][0] <= 50 else 'MISSED'} "
          f"(cold: {'met' if main_result['cold start'][0] <= 50 else 'MISSED'}); "
          f"step p50 <= 10 ms: {'met' if main_result['step'][0] <= 10 else 'MISSED'}")


if __name__ == "__main__":
    asyncio.run(main())
