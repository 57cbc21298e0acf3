"""Gateway fixtures: nothing an in-process call leaves behind (metrics; the caches: tests/conftest.py) reaches the next test.

The live gateway, the fake upstream and `upstream_block` are in tests/conftest.py (tests/support).
"""

from __future__ import annotations

import pytest

from inference import metrics, request_log


@pytest.fixture(autouse=True)
def _no_metrics_left_behind():
    """In-process calls record metrics and request log rows; drop what a test left so nothing flushes into a later test's tables."""
    yield
    metrics.discard_pending()
    request_log.discard_pending()


