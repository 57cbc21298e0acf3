"""schemathesis with every one of its checks over the whole /api/schema/ (the REST API, /discovery
and /v1), against the live gateway (real uvicorn) with an owner's key of the fixture organization.

Not only "no 5xx": undocumented status codes, content types and response schemas, invalid data
accepted, valid data rejected, auth that is ignored, resources that vanish or outlive a DELETE.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from registry.models import Block, Membership, Organization
from registry.services import api_key_create
from tests.factories import BlockFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

EXAMPLES_PER_OPERATION = 12
# NUL characters are refused everywhere on /api (the schema's description says so); the
# refusal is tested on its own in tests/test_bad_input.py, so generation leaves them out.
SCHEMATHESIS = [sys.executable, "-m", "schemathesis.cli", "--config-file", "schemathesis.toml", "run",
                "--checks", "all", "--phases", "examples,coverage,fuzzing,stateful",
                "--max-examples", str(EXAMPLES_PER_OPERATION),
                "--generation-allow-x00", "false", "--generation-codec", "utf-8", "--seed", "8",
                "--request-timeout", "20", "--no-color", "--output-truncate", "false", "--max-failures", "50",
                "--suppress-health-check", "all", "--workers", "1", "--generation-database", "none",
                "--output-sanitize", "false"]
# Every check keeps its defaults but one. positive_data_acceptance already allows 404 (a body naming a
# block, key or organization that does not exist: the fuzzer cannot guess real ones) and 409 (a
# duplicate). It is told 422 too: the API answers 422 only to well-formed input that breaks a rule no
# JSON Schema can state (an expiry already past, a block falling back to itself, a quota's key or a
# rule's block changed after creation), and the schema documents it with those words. 400 stays a
# failure: a schema-valid body that gets a 400 means the schema is wrong.
CONFIG = """
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "422", "429", "5xx"]
"""


OPERATIONS = re.compile(r"Operations:\s+(\d+) selected / (\d+) total")


def _schemathesis(gateway, key: str, cwd, *selection: str) -> str:
    result = subprocess.run(
        [*SCHEMATHESIS, *selection, "--header", f"Authorization: Bearer {key}",
         f"{gateway.url}/api/schema/?format=json"],
        cwd=cwd, capture_output=True, text=True, timeout=900, env=os.environ,  # a hang guard only
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-20000:]
    return output


def test_schemathesis_with_all_checks_passes_over_the_whole_schema(live_gateway, owner, outsider, upstream_block,
                                                                  tmp_path):
    (tmp_path / "schemathesis.toml").write_text(CONFIG)
    upstream_block(owner.organization, block_id="acme-llm")
    BlockFactory(organization=outsider.organization, block_id="globex-public", visibility=Block.PUBLIC)
    # A key of its own that nothing generated can guess: the fuzzer revoking the key it runs with
    # would turn the rest of the run into 401s.
    _, key = api_key_create(organization=owner.organization, name="schemathesis", created_by=owner.user,
                            role=Membership.OWNER)
    # /v1 runs as an organization the REST phase never touched: that phase creates policies and
    # quotas (a 1-token output limit, 0 requests a minute) that rightly refuse later chats, and
    # a chat refused by its organization's own policy says nothing about the schema.
    fresh = Organization.objects.create(name="Initech", slug="initech")
    upstream_block(fresh, block_id="acme-llm")
    _, fresh_key = api_key_create(organization=fresh, name="schemathesis", created_by=None, role=Membership.OWNER)

    rest = _schemathesis(live_gateway, key, tmp_path, "--exclude-path-regex", "^/v1/")
    v1 = _schemathesis(live_gateway, fresh_key, tmp_path, "--include-path-regex", "^/v1/")
    # Together the two runs cover every operation of the schema, the /v1 ones in the second.
    rest_selected, total = map(int, OPERATIONS.search(rest).groups())
    v1_selected, _ = map(int, OPERATIONS.search(v1).groups())
    # The /v1 operations: chat and text completions, embeddings, models (list, one), a queued request's
    # resume and cancel, a request's status (approvals), the runtime's single calls.
    assert v1_selected == 9 and rest_selected + v1_selected == total, (rest[-3000:], v1[-3000:])
