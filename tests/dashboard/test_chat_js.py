"""static/chat.js's frame handling under `node --test` (tests/js/chat.test.mjs): a held request's
`approval` frame shows "waiting for approval" as text until the decision, with no browser."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.support.live_server import ROOT

pytestmark = pytest.mark.slow

NODE = shutil.which("node") or "/usr/bin/node"


def test_the_chat_page_script_shows_a_held_requests_wait_and_clears_it_once_decided():
    done = subprocess.run([NODE, "--test", "tests/js/chat.test.mjs"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    assert "# fail 0" in done.stdout and "# pass 3" in done.stdout
