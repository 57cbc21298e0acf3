"""A block that changes or goes away releases what its backends loaded in this process (a llama.cpp
model no other block uses is freed at once, not at the next restart). Also wires the registry's hooks
that read this layer's data (the block metrics, for the `performance` similarity policy)."""

from __future__ import annotations

from django.db.models.signals import post_delete, post_save

from inference.backends.factory import backends_forget
from inference.selectors import blocks_performance
from registry.models import Block
from registry.similarity.performance import on_block_performance


def _forget(sender, instance: Block, **kwargs) -> None:
    backends_forget(block_pk=instance.pk)


def connect() -> None:
    post_save.connect(_forget, sender=Block, dispatch_uid="inference-backends-block-save")
    post_delete.connect(_forget, sender=Block, dispatch_uid="inference-backends-block-delete")
    # The registry's performance ranking policy reads the block metrics through this hook.
    on_block_performance(blocks_performance)
