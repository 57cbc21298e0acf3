"""Schemathesis fuzzes every operation in /api/schema/ with a valid key: no 5xx anywhere."""

from __future__ import annotations

import pytest
import schemathesis
from django.core import signals
from django.core.handlers.wsgi import WSGIHandler
from django.db import close_old_connections
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from registry.auth import clear_principal_cache
from registry.models import ApiKey, Block
from tests.factories import BlockFactory

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

EXAMPLES_PER_OPERATION = 8


@pytest.fixture
def keep_the_test_connection():
    # Like django.test.Client: a finished request must not close the test's transaction.
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


def test_the_api_answers_no_5xx_to_fuzzed_requests(owner, other_org, keep_the_test_connection):
    BlockFactory(organization=owner.organization, block_id="acme-llm")
    BlockFactory(organization=other_org, block_id="globex-public", visibility=Block.PUBLIC)
    auth = {"Authorization": f"Bearer {owner.key}"}
    schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", WSGIHandler(), headers=auth)
    operations = [result.ok() for result in schema.get_all_operations()]
    # Every operation in the schema, tenancy's and the rest of the API's.
    ours = operations
    assert len(ours) >= 20, [op.label for op in ours]
    server_errors: list[str] = []
    seen: set[int] = set()

    @settings(max_examples=EXAMPLES_PER_OPERATION * len(ours), deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=st.one_of(*(op.as_strategy() for op in ours)))
    def fuzz(case):
        response = case.call(headers=auth)
        seen.add(response.status_code)
        # The fuzzer may revoke its own key (DELETE /api/keys/{id}); un-revoke it to keep going.
        if ApiKey.objects.filter(organization=owner.organization, revoked_at__isnull=False).update(revoked_at=None):
            clear_principal_cache()
        if response.status_code >= 500:
            server_errors.append(f"{case.operation.label}: {response.status_code} for {case.body!r} "
                                 f"{case.path_parameters!r} {response.text[:200]}")

    fuzz()
    assert server_errors == []
    # The fuzzer got past authentication and validation, not only bounced off them.
    assert {200, 400, 404} <= seen, seen
