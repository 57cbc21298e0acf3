"""Where block embeddings live, and the nearest ones to a query, ranked by the database where it can.

PostgreSQL with the `vector` extension (pgvector): migration 0006 adds an `embedding vector(384)`
column to registry_blockembedding and an HNSW index on it (cosine). One query then applies the
caller's filter and visibility and lets the index order the rows by cosine distance
(`ORDER BY embedding <=> query LIMIT k`). pgvector 0.8's iterative index scan goes on until a
filter that drops most of what the index offers still fills the page; an older pgvector, whose HNSW
scan stops at ef_search rows, is caught by the count: fewer rows than asked for reruns the query
with index scans off, so the database ranks the filtered rows exactly.

Everywhere else (SQLite, the embedded default; a PostgreSQL without pgvector, such as Debian 12's
15) the same candidates are read with their float32 bytes in one query and ranked by an exact
numpy scan: the same order and, to float rounding (~1e-7), the same scores.

Ties (equal scores) go to the block id, then the row id, on both paths.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
from django.conf import settings
from django.db import DatabaseError, connections, router, transaction
from django.db.models import QuerySet
from pgvector.django import CosineDistance, HnswIndex

from registry.embeddings import EMBEDDING_DIMENSIONS, EMBEDDING_MODEL_VERSION
from registry.models import Block, BlockEmbedding, BlockVector

log = logging.getLogger(__name__)

TABLE = BlockEmbedding._meta.db_table
HNSW_INDEX = HnswIndex(fields=["embedding"], name="block_embedding_hnsw", opclasses=["vector_cosine_ops"],
                       m=16, ef_construction=64)
# pgvector refuses an ef_search above this.
MAX_EF_SEARCH = 1000

_ready: dict[tuple, bool] = {}


def _db_key(connection) -> tuple:
    conf = connection.settings_dict
    return connection.alias, conf.get("NAME"), conf.get("HOST"), conf.get("PORT")


def pgvector_ready(using: str = "default") -> bool:
    """Whether this database has the pgvector column (checked once per database and process)."""
    connection = connections[using]
    if connection.vendor != "postgresql":
        return False
    key = _db_key(connection)
    if key not in _ready:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema() "
                "AND table_name = %s AND column_name = 'embedding'", [TABLE])
            _ready[key] = cursor.fetchone() is not None
    return _ready[key]


def pgvector_setup(schema_editor) -> bool:
    """Add the vector column and its HNSW index where the server offers the `vector` extension.

    Run by migration 0006 and by `manage.py embed_blocks` (for a server that gained pgvector later).
    Idempotent. False, with the database unchanged, where the extension is missing or may not be
    created (CREATE EXTENSION needs a superuser or the database owner for a trusted extension).
    """
    connection = schema_editor.connection
    if connection.vendor != "postgresql":
        return False
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'")
        if cursor.fetchone() is None:
            log.info("pgvector is not installed on this PostgreSQL: similarity search uses an exact scan")
            return False
        try:
            with transaction.atomic(using=connection.alias):
                cursor.execute("CREATE EXTENSION IF NOT EXISTS vector")
                cursor.execute(f"ALTER TABLE {TABLE} ADD COLUMN IF NOT EXISTS embedding vector({EMBEDDING_DIMENSIONS})")
                cursor.execute("SELECT 1 FROM pg_indexes WHERE schemaname = current_schema() AND indexname = %s",
                               [HNSW_INDEX.name])
                if cursor.fetchone() is None:
                    schema_editor.execute(HNSW_INDEX.create_sql(BlockVector, schema_editor))
                # Rows embedded before the column existed: their bytes are the same vector.
                cursor.execute(f"SELECT block_id, vector FROM {TABLE} WHERE embedding IS NULL AND vector IS NOT NULL")
                rows = cursor.fetchall()
                for block_id, raw in rows:
                    cursor.execute(f"UPDATE {TABLE} SET embedding = %s WHERE block_id = %s",
                                   [_vector_text(_from_bytes(raw)), block_id])
        except DatabaseError as exc:
            log.warning("pgvector is available but could not be set up (%s): similarity search uses an exact scan", exc)
            return False
    _ready.pop(_db_key(connection), None)
    return True


def to_bytes(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype="<f4").reshape(EMBEDDING_DIMENSIONS).tobytes()


def _from_bytes(raw) -> np.ndarray:
    return np.frombuffer(bytes(raw), dtype="<f4")


def _vector_text(vector: np.ndarray) -> str:
    return "[" + ",".join(repr(float(x)) for x in np.asarray(vector, dtype=np.float32)) + "]"


def store_vector(*, block_pk: int, revision: int, vector: np.ndarray, digest: str) -> bool:
    """Write one block's embedding unless its text changed since `revision` was read (then False)."""
    using = router.db_for_write(BlockEmbedding)
    with transaction.atomic(using=using):
        written = BlockEmbedding.objects.filter(block_id=block_pk, revision=revision).update(
            vector=to_bytes(vector), model_version=EMBEDDING_MODEL_VERSION, text_hash=digest, pending=False)
        if written and pgvector_ready(using):
            BlockVector.objects.filter(block_id=block_pk, revision=revision).update(
                embedding=np.asarray(vector, dtype=np.float32))
    return bool(written)


def _ranked(pairs: list[tuple[Block, float]], limit: int) -> list[tuple[Block, float]]:
    return sorted(pairs, key=lambda pair: (-pair[1], pair[0].block_id, pair[0].pk))[:limit]


def nearest(candidates: QuerySet[Block], query: np.ndarray, limit: int) -> list[tuple[Block, float]]:
    """The `limit` candidates most similar to `query` (cosine), best first, with their similarity.

    Candidates without an embedding of the current model are left out (see registry.similarity.services
    for how pending ones are embedded first).
    """
    if pgvector_ready(candidates.db):
        return _nearest_pgvector(candidates, query, limit)
    return _nearest_exact(candidates, query, limit)


def _nearest_pgvector(candidates: QuerySet[Block], query: np.ndarray, limit: int) -> list[tuple[Block, float]]:
    rows = (
        candidates.filter(vector_index__model_version=EMBEDDING_MODEL_VERSION, vector_index__embedding__isnull=False)
        .annotate(distance=CosineDistance("vector_index__embedding", np.asarray(query, dtype=np.float32)))
        # The distance alone: any second sort key would keep the HNSW index from ordering the rows.
        .order_by("distance")[:limit]
    )
    ef_search = min(MAX_EF_SEARCH, max(settings.SIMILARITY_HNSW_EF_SEARCH, limit))
    blocks = _run(rows, ef_search=ef_search, index=True)
    if len(blocks) < limit:
        blocks = _run(rows, ef_search=ef_search, index=False)
    return _ranked([(block, 1.0 - float(block.distance)) for block in blocks], limit)


def _run(rows: QuerySet[Block], *, ef_search: int, index: bool) -> list[Block]:
    connection = connections[rows.db]
    settings_sql = ("SELECT set_config('hnsw.ef_search', %s, {local}), "
                    "set_config('hnsw.iterative_scan', 'relaxed_order', {local})")
    if index and ef_search == settings.SIMILARITY_HNSW_EF_SEARCH and not connection.in_atomic_block:
        # The usual case: the search settings once per connection (a session setting), then the query
        # alone, one round trip. relaxed_order (pgvector 0.8+; an unused setting before): the scan goes
        # on past ef_search until enough rows pass the filter, in nearly distance order (the caller
        # restores the exact order).
        connection.ensure_connection()
        if getattr(connection, "_switchboard_hnsw", None) is not connection.connection:
            with connection.cursor() as cursor:
                cursor.execute(settings_sql.format(local="false"), [str(ef_search)])
            connection._switchboard_hnsw = connection.connection
        return list(rows)
    # Otherwise local to a transaction: a wider ef_search for a long page, or index scans off.
    with transaction.atomic(using=rows.db):
        with connection.cursor() as cursor:
            cursor.execute(settings_sql.format(local="true") + ", set_config('enable_indexscan', %s, true)",
                           [str(ef_search), "on" if index else "off"])
        return list(rows)


def _nearest_exact(candidates: QuerySet[Block], query: np.ndarray, limit: int) -> list[tuple[Block, float]]:
    rows = list(candidates.filter(embedding__model_version=EMBEDDING_MODEL_VERSION, embedding__vector__isnull=False)
                .order_by().values_list("pk", "embedding__vector"))
    if not rows:
        return []
    matrix = np.frombuffer(b"".join(bytes(raw) for _, raw in rows), dtype="<f4").reshape(len(rows), EMBEDDING_DIMENSIONS)
    scores = matrix @ np.asarray(query, dtype=np.float32)
    # A few past `limit`, so ties at the cut are settled by block id like the rest.
    take = min(len(rows), limit + 8)
    top = np.argpartition(-scores, take - 1)[:take] if take < len(rows) else np.arange(len(rows))
    similarity = {rows[i][0]: float(scores[i]) for i in top}
    blocks = candidates.filter(pk__in=list(similarity)).order_by()
    return _ranked([(block, similarity[block.pk]) for block in blocks], limit)


def similarities(block_pks: Sequence[int], query: np.ndarray) -> dict[int, float]:
    """The cosine similarity of each listed block (that has an embedding of the current model) to `query`."""
    rows = BlockEmbedding.objects.filter(block_id__in=list(block_pks), model_version=EMBEDDING_MODEL_VERSION,
                                         vector__isnull=False).values_list("block_id", "vector")
    q = np.asarray(query, dtype=np.float32)
    return {pk: float(_from_bytes(raw) @ q) for pk, raw in rows}
