"""Gateway requests in these tests keep database connections on their threads and record metrics:
drop both before a later test (or the end of the session) would trip over them."""

from __future__ import annotations

import pytest

from inference import metrics, request_log
from tests.workers.conftest import _drop_stray_connections  # noqa: F401


@pytest.fixture(autouse=True)
def _no_metrics_left_behind():
    yield
    metrics.discard_pending()
    request_log.discard_pending()
