"""`manage.py load_builtin_blocks` (run by every `make run`): creates the SmolLM2 block, and keeps
what an operator decided about it."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.core.management import call_command

from registry.models import Block

pytestmark = pytest.mark.django_db


def test_it_creates_a_public_enabled_llamacpp_block_once():
    call_command("load_builtin_blocks")
    call_command("load_builtin_blocks")
    block = Block.objects.get(block_id=settings.SWITCHBOARD_BUILTIN_BLOCK_ID)
    assert (block.backend_type, block.visibility, block.enabled) == ("llamacpp", Block.PUBLIC, True)
    assert block.backend_config == {}
    assert Block.objects.filter(block_id=settings.SWITCHBOARD_BUILTIN_BLOCK_ID).count() == 1


def test_a_restart_keeps_how_the_operator_dispatches_enables_and_shares_it():
    call_command("load_builtin_blocks")
    Block.objects.filter(block_id=settings.SWITCHBOARD_BUILTIN_BLOCK_ID).update(
        backend_config={"dispatch": "queued", "queue": "inference.cpu"}, enabled=False,
        visibility=Block.PRIVATE, description="stale")
    call_command("load_builtin_blocks")
    block = Block.objects.get(block_id=settings.SWITCHBOARD_BUILTIN_BLOCK_ID)
    assert block.backend_config == {"dispatch": "queued", "queue": "inference.cpu"}
    assert (block.enabled, block.visibility) == (False, Block.PRIVATE)
    assert block.description.startswith("SmolLM2 135M")  # what describes the model is refreshed
