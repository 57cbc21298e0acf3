"""The built-in embedding model (registry/embeddings.py: all-MiniLM-L6-v2) behind POST /v1/embeddings.

PyTorch releases the GIL, but one call still takes milliseconds per text: every call runs in a worker
thread (asyncio.to_thread), so the event loop never waits on it. The model is the one every similarity
score comes from, so a client's vectors compare with the registry's.

The request's `input_type` ("query", the default, or "passage", as NVIDIA's OpenAI-shaped servers take it)
says which side of a search a text is on. all-MiniLM-L6-v2 is symmetric, so today both give the same
vector; the field stays so that an asymmetric model (E5's "query: "/"passage: ") can replace it unchanged.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import numpy as np

from inference.backends.base import (
    BackendError,
    ChatDelta,
    ChatRequest,
    EmbeddingRequest,
    StreamingBackend,
    UnsupportedEndpoint,
)
from registry.embeddings import (
    EMBEDDING_DIMENSIONS,
    EMBEDDING_MODEL,
    embed_passages,
    embed_queries,
    token_count,
)

CONFIG_KEYS = frozenset({"timeout_s"})


def _invalid(message: str, param: str, code: str = "invalid_value") -> BackendError:
    return BackendError(message, status=400, code=code, param=param, type="invalid_request_error")


def encode_vector(vector: np.ndarray, encoding_format: str) -> list[float] | str:
    """As OpenAI sends it: a list of floats, or base64 of little-endian float32 (what the openai package
    asks for by default and decodes with numpy.frombuffer(..., dtype="float32"))."""
    if encoding_format == "base64":
        return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")
    return [float(x) for x in vector]


def _embed_sync(texts: list[str], input_type: str) -> tuple[np.ndarray, int]:
    vectors = embed_passages(texts) if input_type == "passage" else embed_queries(texts)
    return vectors, sum(token_count(text) for text in texts)


class BuiltinEmbeddingBackend(StreamingBackend):
    """backend_type "embedding": no configuration (the server has one embedding model)."""

    serves_chat = False
    serves_embeddings = True
    dimensions = EMBEDDING_DIMENSIONS

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> BuiltinEmbeddingBackend:
        unknown = set(config) - CONFIG_KEYS
        if unknown:
            raise BackendError(f"embedding backend config has unknown keys: {sorted(unknown)}", status=500,
                               code="backend_misconfigured")
        return cls()

    def check_embedding_request(self, request: EmbeddingRequest) -> None:
        if request.dimensions is not None and request.dimensions != self.dimensions:
            raise _invalid(f"This model's embeddings have {self.dimensions} dimensions and cannot be shortened; "
                           f"leave 'dimensions' out or send {self.dimensions}.", "dimensions")
        if not all(isinstance(text, str) for text in request.input):
            raise _invalid("The built-in embedding model takes text; send 'input' as a string or a list of "
                           "strings, not token ids.", "input", "unsupported_parameter")

    async def embed(self, request: EmbeddingRequest) -> dict[str, Any]:
        self.check_embedding_request(request)
        texts = list(request.input)
        vectors, tokens = await asyncio.to_thread(_embed_sync, texts, request.input_type or "query")
        data = [{"object": "embedding", "index": index, "embedding": encode_vector(vector, request.encoding_format)}
                for index, vector in enumerate(vectors)]
        return {"object": "list", "data": data, "model": request.model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}

    async def stream_chat(self, request: ChatRequest) -> AsyncIterator[ChatDelta]:
        raise UnsupportedEndpoint(f"{EMBEDDING_MODEL} is an embedding model: use /v1/embeddings")
        yield ChatDelta()  # pragma: no cover - makes this an async generator

    # The seed's synchronous interface: the vectors of input_data's "input" (or "text"), as JSON.
    def run_inference(self, input_data: dict) -> str:
        texts = input_data.get("input", input_data.get("text"))
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            raise BackendError("input_data needs 'input': a string or a list of strings", status=400,
                               code="invalid_request_error")
        vectors, _ = _embed_sync(texts, input_data.get("input_type") or "query")
        return json.dumps([[float(x) for x in vector] for vector in vectors])

    def check_execute(self, query: dict) -> tuple[bool, Any]:
        return True, {"status": "ready", "model": EMBEDDING_MODEL, "dimensions": self.dimensions}

    def get_current_estimates(self) -> tuple[bool, Any]:
        return True, {"model": EMBEDDING_MODEL, "dimensions": self.dimensions}
