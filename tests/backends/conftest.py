from __future__ import annotations

import pytest

from tests.support.fake_grpc import FakeGrpcServer


@pytest.fixture
def grpc_server():
    server = FakeGrpcServer().start()
    yield server
    server.stop()
