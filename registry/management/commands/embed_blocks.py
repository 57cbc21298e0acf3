"""Re-embed blocks: those without an embedding, pending, or embedded by another model (after a model
change), or every block with --all. Also adds the pgvector column and index where the database gained
the extension after migrating."""

from __future__ import annotations

from django.core.management.base import BaseCommand
from django.db import connection

from registry.similarity.services import BATCH, blocks_embed, blocks_needing_embedding
from registry.similarity.vectors import pgvector_setup


class Command(BaseCommand):
    help = "Embed blocks whose embedding is missing, pending or from another model (--all: every block)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--all", action="store_true", help="re-embed every block")

    def handle(self, *args, **options) -> None:
        with connection.schema_editor() as editor:
            vector_store = pgvector_setup(editor)
        pks = list(blocks_needing_embedding(everything=options["all"]).order_by("pk").values_list("pk", flat=True))
        written = 0
        for start in range(0, len(pks), BATCH * 8):
            written += blocks_embed(block_pks=pks[start:start + BATCH * 8])
        store = "pgvector (HNSW)" if vector_store else "exact scan"
        self.stdout.write(f"embedded {written} of {len(pks)} blocks; vector search: {store}")
