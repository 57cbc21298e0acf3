"""A block's `backend_type` picks the implementation; one instance per block per process."""

from __future__ import annotations

from typing import Any

from django.utils.module_loading import import_string

from inference.backends.base import BackendError, StreamingBackend

# backend_type -> dotted path of a class with `from_config(config: dict) -> StreamingBackend`.
BACKEND_CLASSES: dict[str, str] = {
    "openai": "inference.backends.openai_compat.OpenAIBackend",
    "llamacpp": "inference.backends.llamacpp.LlamaCppBackend",
    "python": "inference.backends.python_class.PythonClassBackend",
    "aios_grpc": "inference.backends.aios_grpc.AIOSBackend",
    "orgllm_grpc": "inference.backends.orgllm_grpc.OrgLLMBackend",
    "sglang": "inference.backends.sglang.SGLangBackend",
    # The server's embedding model (registry/embeddings.py): POST /v1/embeddings only.
    "embedding": "inference.backends.embedding.BuiltinEmbeddingBackend",
}
# Backends that serve no chat: never a candidate when `model: "auto"` chooses a block.
EMBEDDING_ONLY_BACKENDS: tuple[str, ...] = ("embedding",)
# A block configured `dispatch: queued` runs as a Celery task; the gateway relays its token stream.
QUEUED_BACKEND = "inference.backends.queued.backend.QueuedBackend"
# Keys that say how a block's requests reach a worker, not how its backend runs there.
DISPATCH_KEYS = frozenset({"dispatch", "queue"})

_instances: dict[tuple[str, str], StreamingBackend] = {}


class UnknownBackend(BackendError):
    def __init__(self, backend_type: str):
        super().__init__(f"block backend type {backend_type!r} is not available", status=500,
                         code="backend_unavailable")


def backend_for(*, block_id: str, backend_type: str, config: dict[str, Any], version: str = "",
                cache_key: str | None = None, block_pk: int | None = None) -> StreamingBackend:
    """`version` (the block's updated_at) retires a cached instance when the block changes.

    Block ids are unique per organization only: instances of real blocks are cached by
    `cache_key` (from the block's pk), and backends that find engines by block get `block_pk`.
    """
    name = cache_key or block_id
    key = (name, version)
    backend = _instances.get(key)
    if backend is None:
        path = BACKEND_CLASSES.get(backend_type)
        if path is None:
            raise UnknownBackend(backend_type)
        if config.get("dispatch") == "queued":
            path = QUEUED_BACKEND
        cls = import_string(path)
        # Backends that need to know their block (engine pools, queues) take it via for_block.
        backend = (cls.for_block(block_id, backend_type, config, block_pk=block_pk) if hasattr(cls, "for_block")
                   else cls.from_config(config))
        for stale in [k for k in _instances if k[0] == name]:
            _release(_instances.pop(stale))
        _instances[key] = backend
    return backend


def _release(backend: StreamingBackend) -> None:
    # Backends that keep something loaded (a llama.cpp model) free it when their block goes.
    release = getattr(backend, "release", None)
    if release is not None:
        release()


def backends_forget(*, block_pk: int) -> None:
    """Retire this process's backends of a block that changed or was deleted (Block signals);
    other processes retire theirs on their next lookup, when the block's version has moved."""
    for key in [k for k in _instances if k[0] in (f"pk:{block_pk}", f"pk:{block_pk}#own")]:
        backend = _instances.pop(key, None)
        if backend is not None:
            _release(backend)


def backend_for_block(block) -> StreamingBackend:
    return backend_for(block_id=block.block_id, backend_type=block.backend_type,
                       config=block.backend_config or {}, version=block.updated_at.isoformat(),
                       cache_key=f"pk:{block.pk}", block_pk=block.pk)


def own_backend_for_block(block) -> StreamingBackend:
    """The backend that runs the block itself, even when its requests are queued: what a worker
    executes, and what counts its prompt tokens. Cached apart from the gateway's queued front."""
    config = {k: v for k, v in (block.backend_config or {}).items() if k not in DISPATCH_KEYS}
    return backend_for(block_id=f"{block.block_id}#own", backend_type=block.backend_type, config=config,
                       version=block.updated_at.isoformat(), cache_key=f"pk:{block.pk}#own", block_pk=block.pk)
