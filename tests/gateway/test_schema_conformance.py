"""schemathesis with every one of its checks over the whole /api/schema/ (the REST API, /discovery
and /v1), against the live gateway (real uvicorn) with an owner's key of the fixture organization.

Not only "no 5xx": undocumented status codes, content types and response schemas, invalid data
accepted, valid data rejected, auth that is ignored, resources that vanish or outlive a DELETE.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from registry.models import Block, Membership
from registry.services import api_key_create
from tests.factories import BlockFactory
from tests.gateway.conftest import ROOT

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

EXAMPLES_PER_OPERATION = 12
# Failures accepted for now, each one a schema-valid body the API still refuses with 400 (see the
# file): a new failure fails this test, SCHEMATHESIS_UPDATE_BASELINE=1 merges a run's failures into it.
BASELINE = ROOT / "tests" / "gateway" / "schemathesis_baseline.json"
# NUL characters are refused everywhere on /api (the schema's description says so); the
# refusal is tested on its own in tests/test_bad_input.py, so generation leaves them out.
SCHEMATHESIS = [sys.executable, "-m", "schemathesis.cli", "run", "--checks", "all", "--phases",
                "examples,coverage,fuzzing,stateful", "--max-examples", str(EXAMPLES_PER_OPERATION),
                "--generation-allow-x00", "false", "--generation-codec", "utf-8", "--seed", "8",
                "--request-timeout", "20", "--no-color", "--output-truncate", "false", "--max-failures", "50",
                "--suppress-health-check", "all", "--workers", "1", "--generation-database", "none"]


def test_schemathesis_with_all_checks_passes_over_the_whole_schema(live_gateway, owner, outsider, upstream_block,
                                                                  tmp_path):
    upstream_block(owner.organization, block_id="acme-llm")
    BlockFactory(organization=outsider.organization, block_id="globex-public", visibility=Block.PUBLIC)
    # A key of its own that nothing generated can guess: the fuzzer revoking the key it runs with
    # would turn the rest of the run into 401s.
    _, key = api_key_create(organization=owner.organization, name="schemathesis", created_by=owner.user,
                            role=Membership.OWNER)
    baseline = ["--baseline", str(BASELINE)]
    if os.environ.get("SCHEMATHESIS_UPDATE_BASELINE"):
        baseline += ["--baseline-update"]
    started = time.monotonic()
    result = subprocess.run(
        [*SCHEMATHESIS, *baseline, "--header", f"Authorization: Bearer {key}", f"{live_gateway.url}/api/schema/?format=json"],
        cwd=tmp_path, capture_output=True, text=True, timeout=240,
        env=os.environ,
    )
    took = time.monotonic() - started
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-20000:]
    assert "/v1/chat/completions" in output and "/api/blocks" in output, output[-3000:]
    assert took < 90, f"schemathesis took {took:.0f} s"
