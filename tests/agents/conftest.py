"""Agent runs execute on the in-process executor's threads (as workflow nodes do in these tests), which
see only committed rows: the API tests are transactional."""

from __future__ import annotations

# The workflow tests' executor settings and loop cleanup, shared rather than copied.
from tests.workflows.conftest import _close_the_node_loop, _in_process_executor, wait_for  # noqa: F401
