"""Blocks and requests on the fake SGLang engine through the queued path (Celery task -> Redis Stream)."""

from __future__ import annotations

from inference.backends.base import ChatRequest
from tests.factories import BlockFactory


def expected(start: int, end: int) -> str:
    """What the fake engine streams for tokens start..end-1 (tests/support/fake_sglang.py)."""
    return "".join(f"tok{i} " for i in range(start, end))


def queued_block(engine_url: str, organization, **config):
    return BlockFactory(organization=organization, backend_type="openai",
                        backend_config={"base_url": f"{engine_url}/v1", "dispatch": "queued",
                                        "queue": "inference.cpu", **config})


def engine_chat(org, max_tokens: int = 16) -> ChatRequest:
    return ChatRequest(messages=[{"role": "user", "content": "hello"}], model="m", max_tokens=max_tokens,
                       organization_id=org.pk)


async def collect(backend, request: ChatRequest) -> tuple[str, list]:
    deltas = [d async for d in backend.stream_chat(request)]
    return "".join(d.content for d in deltas), deltas
