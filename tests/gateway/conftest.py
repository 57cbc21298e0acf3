"""Gateway fixtures: nothing an in-process call leaves behind (metrics, caches) reaches the next test.

The live gateway, the fake upstream and `upstream_block` are in tests/conftest.py (tests/support).
"""

from __future__ import annotations

import pytest

from inference import metrics
from inference.gateway.blocks import clear_block_cache
from inference.gateway.pipeline import clear_principal_cache


@pytest.fixture(autouse=True)
def _no_metrics_left_behind():
    """In-process calls record metrics; drop what a test left so nothing flushes into a later test's tables."""
    yield
    metrics.discard_pending()


@pytest.fixture(autouse=True)
def _fresh_gateway_caches():
    clear_block_cache()
    clear_principal_cache()
    yield
    clear_block_cache()
    clear_principal_cache()
