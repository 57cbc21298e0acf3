"""Agent runs execute on the in-process executor's threads (as workflow nodes do in these tests), which
see only committed rows: the API tests are transactional."""

from __future__ import annotations

import pytest

# The workflow tests' executor settings and loop cleanup, shared rather than copied.
from tests.workflows.conftest import _close_the_node_loop, _in_process_executor, wait_for  # noqa: F401


@pytest.fixture
def brain(org, upstream_block, fake_upstream):
    """brain(*replies, scenario="") -> the `guide-brain` block of `org`, answering with `replies`."""

    def make(*replies, scenario: str = "", block_id: str = "guide-brain"):
        return upstream_block(org, block_id=block_id,
                              config={"base_url": fake_upstream.script(block_id.replace("-", ""), *replies,
                                                                       scenario=scenario)})

    return make
