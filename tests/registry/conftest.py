"""The query cases' catalog (tests/support/query_cases.py): blocks with varied tags, protocols and
metadata, owned by the `org` (acme) fixture."""

from __future__ import annotations

import pytest

from registry.models import Block
from tests.support.query_cases import catalog_create


@pytest.fixture
def catalog(org) -> dict[str, Block]:
    return catalog_create(org)
