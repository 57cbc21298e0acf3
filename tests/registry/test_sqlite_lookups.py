"""The query cases of tests/support/query_cases.py on SQLite (the embedded default), the same that
test_query.py runs on PostgreSQL: one subprocess with no DATABASE_URL, so Django really uses SQLite
(and json_each), answers every case; each case is then a test of its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.live_server import ROOT
from tests.support.query_cases import (
    CASES,
    LIST_CASES,
    METADATA_CASES,
    SCALAR_CASES,
    SHAPE_CASES,
    QueryCase,
    case_ids,
)

pytestmark = [pytest.mark.embedded, pytest.mark.slow]

SCRIPT = r"""
import json
import django
django.setup()
from django.core.management import call_command
from django.db import connection
call_command("migrate", verbosity=0)
from registry.models import Organization
from tests.support.query_cases import CASES, catalog_create, matching
org = Organization.objects.create(name="Acme", slug="acme")
catalog_create(org)
print(json.dumps({"vendor": connection.vendor, "answers": {case.id: matching(org, case.payload) for case in CASES}}))
"""


def embedded_env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "DEBUG",
                                                               "ALLOWED_HOSTS", "SECURE_SSL_REDIRECT")}
    env["SWITCHBOARD_DATA_DIR"] = str(data_dir)
    env["DJANGO_SETTINGS_MODULE"] = "webapp.settings"
    return env


@pytest.fixture(scope="module")
def on_sqlite(tmp_path_factory) -> dict:
    data_dir = tmp_path_factory.mktemp("embedded")
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, cwd=ROOT,
                          env=embedded_env(data_dir), timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "data_dir": data_dir}


def test_every_case_ran_on_the_embedded_sqlite_database(on_sqlite):
    assert on_sqlite["vendor"] == "sqlite"
    assert sorted(on_sqlite["answers"]) == sorted(case.id for case in CASES)  # ids are unique: none shadowed
    assert (on_sqlite["data_dir"] / "switchboard.sqlite3").exists()


@pytest.mark.parametrize("case", SCALAR_CASES, ids=case_ids(SCALAR_CASES))
def test_scalar_columns_on_sqlite(on_sqlite, case: QueryCase):
    assert on_sqlite["answers"][case.id] == case.expected


@pytest.mark.parametrize("case", LIST_CASES, ids=case_ids(LIST_CASES))
def test_list_fields_as_sets_on_sqlite(on_sqlite, case: QueryCase):
    assert on_sqlite["answers"][case.id] == case.expected


@pytest.mark.parametrize("case", METADATA_CASES, ids=case_ids(METADATA_CASES))
def test_metadata_dot_paths_on_sqlite(on_sqlite, case: QueryCase):
    assert on_sqlite["answers"][case.id] == case.expected


@pytest.mark.parametrize("case", SHAPE_CASES, ids=case_ids(SHAPE_CASES))
def test_payload_shapes_and_nesting_on_sqlite(on_sqlite, case: QueryCase):
    assert on_sqlite["answers"][case.id] == case.expected
