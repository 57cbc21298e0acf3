"""The query compiler on SQLite (the embedded default): the same cases, run in a subprocess
with no DATABASE_URL so Django really uses SQLite and json_each."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

CASES = [
    ("tags", "==", "qa", ["qa-b"]),
    ("tags", "!=", "qa", ["img-d", "opt-c", "sum-a"]),
    ("tags", "IN", ["qa", "prompt"], ["opt-c", "qa-b"]),
    ("tags", "NOT IN", ["qa", "prompt"], ["img-d", "sum-a"]),
    ("tags", "LIKE", "SUMM*", ["sum-a"]),
    ("tags", "==", ["qa"], ["qa-b"]),
    ("tags", "IN", [], []),
    ("inputProtocols", "==", "text/plain", ["qa-b", "sum-a"]),
    ("outputProtocol", "LIKE", "application/*", ["opt-c"]),
    ("metadata.gpus.memory", ">", 16, ["sum-a"]),
    ("metadata.gpus.memory", ">=", 8, ["qa-b", "sum-a"]),
    ("metadata.gpus.memory", "<", 10, ["qa-b"]),
    ("metadata.gpus.memory", "<=", 24.0, ["qa-b", "sum-a"]),
    ("metadata.gpus.memory", "==", "16", ["opt-c"]),
    ("metadata.gpus.memory", "==", 16, []),
    ("metadata.gpus.memory", ">", "1", ["opt-c"]),
    ("metadata.region", "==", "eu", ["sum-a"]),
    ("metadata.region", "!=", "eu", ["img-d", "opt-c", "qa-b"]),
    ("metadata.region", "NOT IN", ["eu", "us"], ["img-d", "opt-c"]),
    ("metadata.languages", "==", "de", ["sum-a"]),
    ("metadata.languages", "IN", ["de", "fr"], ["sum-a"]),
    ("metadata.languages", "LIKE", "e*", ["qa-b", "sum-a"]),
    ("metadata.languages", "==", ["en"], ["qa-b"]),
    ("metadata.languages.1", "==", "de", ["sum-a"]),
    ("metadata.flag", "==", True, ["sum-a"]),
    ("metadata.flag", "==", 1, ["qa-b"]),
    ("description", "LIKE", "*RESEARCH*", ["sum-a"]),
    ("description", "LIKE", "*accurate_ish*", ["qa-b"]),
    ("description", "LIKE", "*100%*", ["qa-b"]),
    ("enabled", "==", False, ["opt-c"]),
    ("createdAt", ">", "2000-01-01", ["img-d", "opt-c", "qa-b", "sum-a"]),
]

SCRIPT = r"""
import json, sys
import django
django.setup()
from django.core.management import call_command
from django.db import connection
call_command("migrate", verbosity=0)
assert connection.vendor == "sqlite", connection.vendor
from registry.models import Block, Organization
from registry.selectors import blocks_query
org = Organization.objects.create(name="Acme", slug="acme")
def block(block_id, **kw):
    Block.objects.create(block_id=block_id, organization=org, **kw)
block("sum-a", description="Summarizes research papers", tags=["summarization", "text"],
      input_protocols=["text/plain"], output_protocols=["text/plain"],
      metadata={"gpus": {"memory": 24, "count": 2}, "region": "eu", "languages": ["en", "de"], "flag": True})
block("qa-b", description="Question answering, 100% accurate_ish", tags=["qa"],
      input_protocols=["text/plain", "application/json"], output_protocols=["text/plain"],
      metadata={"gpus": {"memory": 8}, "region": "us", "languages": ["en"], "flag": 1})
block("opt-c", kind="optimizer", description="Prompt optimizer", tags=["prompt", "optimizer"],
      input_protocols=["application/json"], output_protocols=["application/json"],
      metadata={"gpus": {"memory": "16"}}, enabled=False)
block("img-d", description="Captions images, accurate-ish", tags=[], input_protocols=["image/png"],
      output_protocols=["text/plain"], metadata={})
results = []
for variable, operator, value in json.load(sys.stdin):
    payload = {"conditions": [{"variable": variable, "operator": operator, "value": value}]}
    results.append(sorted(b.block_id for b in blocks_query(organization=org, payload=payload)))
nested = {"logicalOperator": "OR", "conditions": [
    {"variable": "tags", "operator": "==", "value": "qa"},
    {"logicalOperator": "AND", "conditions": [
        {"variable": "kind", "operator": "==", "value": "optimizer"},
        {"variable": "inputProtocols", "operator": "IN", "value": ["application/json"]}]}]}
results.append(sorted(b.block_id for b in blocks_query(organization=org, payload=nested)))
print(json.dumps(results))
"""


def embedded_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "DEBUG",
                                                               "ALLOWED_HOSTS", "SECURE_SSL_REDIRECT")}
    env["SWITCHBOARD_DATA_DIR"] = str(tmp_path)
    env["DJANGO_SETTINGS_MODULE"] = "webapp.settings"
    return env


@pytest.mark.embedded
def test_the_list_and_metadata_lookups_work_on_sqlite(tmp_path):
    stdin = json.dumps([[v, o, val] for v, o, val, _ in CASES])
    done = subprocess.run([sys.executable, "-c", SCRIPT], input=stdin, capture_output=True, text=True,
                          cwd=ROOT, env=embedded_env(tmp_path), timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    for (variable, operator, value, expected), got in zip(CASES, results, strict=False):
        assert got == expected, f"{variable} {operator} {value!r}: {got} != {expected}"
    assert results[-1] == ["opt-c", "qa-b"]
    assert (tmp_path / "switchboard.sqlite3").exists()
