"""static/runtime.js, the JavaScript client, under `node --test` (tests/js/runtime.test.mjs) against a live
gateway: `make test` runs it with the rest of the suite."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.support.live_server import ROOT

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

NODE = shutil.which("node") or "/usr/bin/node"


def test_the_javascript_client_passes_its_node_tests_against_a_live_server(live_gateway, owner, upstream_block):
    upstream_block(owner.organization, "chunks3", block_id="qwen3-0.6b")
    upstream_block(owner.organization, "delay50-chunks40", block_id="qwen3-slow")
    env = {**os.environ, "SWITCHBOARD_URL": live_gateway.url, "SWITCHBOARD_API_KEY": owner.key,
           # Node 20 has a WebSocket behind this flag; the test runner's child processes inherit it from here.
           "NODE_OPTIONS": "--experimental-websocket"}
    done = subprocess.run([NODE, "--test", "--test-concurrency=1", "tests/js/runtime.test.mjs"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    assert "# fail 0" in done.stdout and "# pass 6" in done.stdout
