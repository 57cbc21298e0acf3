"""The gateway's request threads keep database connections: drop them before the test database goes."""

from tests.workers.conftest import _drop_stray_connections  # noqa: F401
