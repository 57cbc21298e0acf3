"""A saved block whose searchable text changed gets its embedding recomputed (registry.similarity.services)."""

from __future__ import annotations

from django.db.models.signals import post_save

from registry.models import Block
from registry.similarity.services import block_embedding_mark, block_embeddings_schedule


def _block_saved(sender, instance: Block, created: bool, raw: bool = False, **kwargs) -> None:
    if raw:  # loaddata: the fixture's rows, as they are
        return
    if block_embedding_mark(block=instance, created=created):
        block_embeddings_schedule(block_pks=[instance.pk])


def connect() -> None:
    post_save.connect(_block_saved, sender=Block, dispatch_uid="registry-similarity-block-save")
