"""Run as a script against another database (DATABASE_URL): migrate it, load the relevance fixture
into one organization (and a private block into another, which must never show), rank every task
under every comparison filter, and print JSON: whether pgvector served it, and the rankings.

tests/registry/test_similarity_pgvector.py runs it against a pgvector PostgreSQL and compares with
the exact scan of the suite's own database."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402

from registry.models import Block, Organization  # noqa: E402
from registry.similarity.vectors import pgvector_ready  # noqa: E402
from tests.registry.relevance import load_relevance_blocks, rank_everything  # noqa: E402


def main() -> None:
    call_command("migrate", verbosity=0)
    acme = Organization.objects.create(name="Acme", slug="acme")
    globex = Organization.objects.create(name="Globex", slug="globex")
    Block.objects.create(organization=globex, block_id="globex-translator", name="Globex Translator",
                         description="Translates text between languages, German to English included.")
    load_relevance_blocks(acme)
    rankings = rank_everything(acme)
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = 'block_embedding_hnsw'")
        index = cursor.fetchone()
    print(json.dumps({"pgvector": pgvector_ready(), "hnsw_index": index[0] if index else None,
                      "rankings": rankings}))


if __name__ == "__main__":
    main()
