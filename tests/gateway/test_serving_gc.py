"""The serving process tunes its garbage collector at ASGI lifespan startup (inference/lifespan.py).

Each case runs the lifespan in a fresh interpreter: the collector's settings belong to the whole
process, and the test runner's own must stay as they are.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # each test starts a fresh interpreter

ROOT = Path(__file__).resolve().parents[2]

STARTUP = """
import asyncio, gc, json, sys, threading
import django
django.setup()
from inference import lifespan

async def start():
    sent = []
    messages = iter([{"type": "lifespan.startup"}])
    async def receive():
        try:
            return next(messages)
        except StopIteration:
            await asyncio.Event().wait()
    async def send(message):
        sent.append(message["type"])
    task = asyncio.ensure_future(lifespan.application({"type": "lifespan"}, receive, send))
    while not sent:
        await asyncio.sleep(0.01)
    task.cancel()
    return sent

threshold_before = gc.get_threshold()
if sys.argv[1] == "thread":
    found = []
    runner = threading.Thread(target=lambda: found.append(asyncio.run(start())))
    runner.start()
    runner.join()
    sent = found[0]
else:
    sent = asyncio.run(start())
print(json.dumps({"sent": sent, "frozen": gc.get_freeze_count(), "threshold": gc.get_threshold(),
                  "threshold_before": threshold_before}))
"""


def lifespan_startup(where: str, **env: str) -> dict:
    out = subprocess.run([sys.executable, "-c", STARTUP, where], cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, "DJANGO_SETTINGS_MODULE": "webapp.settings", **env}, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_server_on_the_main_thread_freezes_what_startup_loaded_and_collects_young_objects_less_often():
    found = lifespan_startup("main", SERVER_GC_FREEZE="", SERVER_GC_THRESHOLD="")
    assert found["sent"] == ["lifespan.startup.complete"]
    # Django, DRF, Channels and aiohttp: well over ten thousand objects no collection walks again.
    assert found["frozen"] > 10_000
    assert found["threshold"] == [10_000, *found["threshold_before"][1:]]


def test_the_settings_give_back_pythons_own_collector():
    found = lifespan_startup("main", SERVER_GC_FREEZE="0", SERVER_GC_THRESHOLD="0")
    assert found["sent"] == ["lifespan.startup.complete"]
    assert found["frozen"] == 0
    assert found["threshold"] == found["threshold_before"]


def test_a_server_started_in_a_thread_of_another_program_leaves_its_collector_alone():
    found = lifespan_startup("thread", SERVER_GC_FREEZE="", SERVER_GC_THRESHOLD="")
    assert found["sent"] == ["lifespan.startup.complete"]
    assert found["frozen"] == 0
    assert found["threshold"] == found["threshold_before"]
