"""Celery tasks of the registry. They take ids; the work is in registry.similarity.services."""

from __future__ import annotations

from celery import shared_task

from registry.similarity.services import EMBED_TASK, blocks_embed


@shared_task(name=EMBED_TASK, acks_late=True, ignore_result=True)
def embed_blocks(block_pks: list[int]) -> int:
    return blocks_embed(block_pks=block_pks)
