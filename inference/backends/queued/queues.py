"""Queue names: model work per GPU node or on CPU workers, everything else on `default`."""

from __future__ import annotations

import re

DEFAULT_QUEUE = "default"
CPU_QUEUE = "inference.cpu"
GPU_QUEUE_PREFIX = "inference.gpu."


def gpu_queue(node: str) -> str:
    """One queue per GPU node: its worker owns that node's engines, so only it can serve them."""
    return GPU_QUEUE_PREFIX + re.sub(r"[^A-Za-z0-9_.-]", "-", node)


def queued_request_queue(*, configured: str | None, backend_type: str, engine_node: str | None) -> str:
    """Where a queued request waits: the queue its block names, else (SGLang) the GPU queue of the
    node whose engine serves it, else the CPU queue."""
    if configured:
        return configured
    if backend_type == "sglang" and engine_node is not None:
        return gpu_queue(engine_node)
    return CPU_QUEUE


def route_task(name: str, args, kwargs, options, task=None, **kw) -> dict | None:
    """Model tasks default to the CPU queue; callers name a GPU queue explicitly."""
    if name.startswith("inference.") and "queue" not in options:
        return {"queue": CPU_QUEUE}
    return None
