"""Blocks with varied tags, protocols and metadata, owned by the `org` (acme) fixture."""

from __future__ import annotations

import pytest

from registry.models import Block
from tests.factories import BlockFactory


@pytest.fixture
def catalog(org) -> dict[str, Block]:
    blocks = [
        BlockFactory(
            block_id="sum-a", name="alpha", organization=org, description="Summarizes research papers",
            tags=["summarization", "text"], input_protocols=["text/plain"], output_protocols=["text/plain"],
            metadata={"gpus": {"memory": 24, "count": 2}, "region": "eu", "languages": ["en", "de"]},
        ),
        BlockFactory(
            block_id="qa-b", name="bravo", organization=org, description="Question answering, 100% accurate_ish",
            tags=["qa"], input_protocols=["text/plain", "application/json"], output_protocols=["text/plain"],
            metadata={"gpus": {"memory": 8}, "region": "us", "languages": ["en"]},
        ),
        BlockFactory(
            block_id="opt-c", name="charlie", organization=org, kind=Block.OPTIMIZER,
            description="Prompt optimizer", tags=["prompt", "optimizer"], input_protocols=["application/json"],
            output_protocols=["application/json"], metadata={"gpus": {"memory": "16"}}, enabled=False,
        ),
        BlockFactory(
            block_id="img-d", name="delta", organization=org, description="Captions images, accurate-ish",
            tags=[], input_protocols=["image/png"], output_protocols=["text/plain"], metadata={},
        ),
    ]
    return {b.block_id: b for b in blocks}
