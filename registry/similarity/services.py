"""Keeping block embeddings current: marked in the write's transaction, computed off the request path.

A write that creates a block or changes its searchable text (registry.similarity.text) marks the
block's BlockEmbedding row pending in the same transaction (a post_save handler, registry/apps.py), and
once that transaction commits the block is handed to the embedder:

- `celery` (the default when REDIS_URL is set, the production shape): the Celery task
  `registry.embed_blocks` (registry/tasks.py), sent by name to the `default` queue that the workers
  consume;
- `thread` (the default in the embedded default, which has no broker): one daemon thread in this
  process;
- `off`: nothing; searches and `manage.py embed_blocks` do the work.

A search never waits for that job and never misses a block over it: it first embeds, itself, the
pending rows among its own candidates (at most SIMILARITY_EMBED_ON_DEMAND_MAX; any beyond are ranked on
their previous embedding if they have one, or left out until the job runs). See embed_pending.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterable, Sequence

import numpy as np
from celery import current_app
from django.conf import settings
from django.db import connections, transaction
from django.db.models import F, Q, QuerySet

from registry.embeddings import EMBEDDING_MODEL_VERSION, embed_passages
from registry.models import Block, BlockEmbedding
from registry.similarity.text import SEARCHABLE_FIELDS, embedding_views, searchable_text, text_hash
from registry.similarity.vectors import store_vector

log = logging.getLogger(__name__)

EMBED_TASK = "registry.embed_blocks"
BATCH = 64


def block_embedding_mark(*, block: Block, created: bool) -> bool:
    """Mark `block`'s embedding pending if its searchable text is new or changed; True if it was."""
    if created:
        BlockEmbedding.objects.get_or_create(block=block)
        return True
    digest = text_hash(searchable_text(**{f: getattr(block, f) for f in SEARCHABLE_FIELDS}))
    changed = (BlockEmbedding.objects.filter(block=block).exclude(text_hash=digest, pending=False)
               .update(pending=True, revision=F("revision") + 1))
    if changed:
        return True
    # A block written without save() (bulk_create, raw SQL) has no row yet.
    _, created_row = BlockEmbedding.objects.get_or_create(block=block)
    return created_row


def block_embeddings_schedule(*, block_pks: Sequence[int]) -> None:
    """Hand the blocks to the embedder once the current transaction commits (at once outside one)."""
    pks = list(block_pks)
    if pks:
        transaction.on_commit(lambda: _dispatch(pks))


def _dispatch(block_pks: list[int]) -> None:
    mode = settings.EMBEDDINGS_DISPATCH
    if mode == "celery":
        try:
            current_app.send_task(EMBED_TASK, args=[block_pks])
        except Exception:  # the broker is down: searches embed on demand, embed_blocks catches up
            log.warning("could not queue %s for %d blocks; they stay pending", EMBED_TASK, len(block_pks),
                        exc_info=True)
    elif mode == "thread":
        _thread.submit(block_pks)


def _rows(pks: Iterable[int]) -> list[tuple]:
    fields = ["pk", *SEARCHABLE_FIELDS, "embedding__revision"]
    return list(Block.objects.filter(pk__in=list(pks)).order_by("pk").values_list(*fields))


def blocks_embed(*, block_pks: Sequence[int]) -> int:
    """Embed these blocks now, in batches; returns how many embeddings were written. A block whose
    text changed while it was being embedded keeps its pending mark for the next run."""
    pks = list(block_pks)
    existing = set(BlockEmbedding.objects.filter(block_id__in=pks).values_list("block_id", flat=True))
    BlockEmbedding.objects.bulk_create([BlockEmbedding(block_id=pk) for pk in pks if pk not in existing],
                                       ignore_conflicts=True)
    written = 0
    for start in range(0, len(pks), BATCH):
        rows = _rows(pks[start:start + BATCH])
        fields = [dict(zip(SEARCHABLE_FIELDS, row[1:-1], strict=True)) for row in rows]
        views = [embedding_views(**f) for f in fields]
        flat = embed_passages([text for texts in views for text in texts])
        offset = 0
        for row, f, texts in zip(rows, fields, views, strict=True):
            vector = flat[offset:offset + len(texts)].mean(axis=0)
            offset += len(texts)
            vector /= max(float(np.linalg.norm(vector)), 1e-12)
            written += store_vector(block_pk=row[0], revision=row[-1] or 0, vector=vector,
                                    digest=text_hash(searchable_text(**f)))
    return written


def embed_pending(candidates: QuerySet[Block]) -> int:
    """Embed the pending blocks among a search's candidates (at most SIMILARITY_EMBED_ON_DEMAND_MAX)."""
    cap = settings.SIMILARITY_EMBED_ON_DEMAND_MAX
    if cap <= 0:
        return 0
    pks = list(candidates.filter(embedding__pending=True).order_by().values_list("pk", flat=True)[:cap])
    return blocks_embed(block_pks=pks) if pks else 0


def blocks_needing_embedding(*, everything: bool = False) -> QuerySet[Block]:
    """Blocks with no embedding row, a pending one, or one from another model (all with `everything`)."""
    if everything:
        return Block.objects.all()
    return Block.objects.filter(Q(embedding__isnull=True) | Q(embedding__pending=True)
                                | ~Q(embedding__model_version=EMBEDDING_MODEL_VERSION))


class _EmbeddingThread:
    """The embedded default's embedder: one daemon thread, fed block ids through a queue."""

    def __init__(self) -> None:
        self._queue: queue.Queue[list[int]] = queue.Queue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def submit(self, block_pks: list[int]) -> None:
        self._queue.put(block_pks)
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="block-embeddings", daemon=True)
                self._thread.start()

    def join(self) -> None:
        """Wait until everything submitted so far is embedded (tests, and the shutdown of a command)."""
        self._queue.join()

    def _run(self) -> None:
        while True:
            pks = self._queue.get()
            try:
                blocks_embed(block_pks=pks)
            except Exception:
                log.exception("embedding %d blocks failed; they stay pending", len(pks))
            finally:
                # This thread's own connection: closed between jobs, so it never holds one while idle.
                connections.close_all()
                self._queue.task_done()


_thread = _EmbeddingThread()


def embedding_thread_join() -> None:
    _thread.join()
