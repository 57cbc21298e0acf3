"""Component types: a name -> class registry (a request names a type, never a module).

A type checks the attributes it is defined with (`prepare`) and serves methods by name; every method is
an async generator of packet bodies. The component's row (inference.runtime.models.Component) holds
its attributes, so any process of the organization serves it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import numpy as np
import orjson
from django.conf import settings

from inference.gateway import pipeline
from inference.gateway.blocks import list_blocks
from inference.gateway.errors import OpenAIError
from inference.runtime import selectors, services
from inference.runtime.errors import VMFailure, bad_input, not_found
from inference.runtime.models import Component
from registry import embeddings
from registry.asyncdb import in_db_thread
from registry.models import Block
from registry.principal import Principal
from registry.tenancy.access import block_access
from registry.tenancy.policy import GateError

Method = Callable[[Principal, Component, Any], AsyncIterator[Any]]


def from_openai(exc: OpenAIError) -> VMFailure:
    return VMFailure(exc.status, exc.message, code=exc.code or "error", param=exc.param)


def _object(inputs: Any, what: str) -> dict[str, Any]:
    if not isinstance(inputs, dict):
        raise bad_input(f"The input of {what} must be an object.", "input", "invalid_type")
    return inputs


class ComponentType:
    name: str = ""
    aliases: tuple[str, ...] = ()
    methods: dict[str, str] = {}  # method name -> the attribute serving it

    async def prepare(self, principal: Principal, attrs: dict[str, Any]) -> dict[str, Any]:
        return attrs

    def method(self, name: str) -> Method:
        attribute = self.methods.get(name) if isinstance(name, str) else None
        if attribute is None:
            raise not_found(f"A {self.name} has no method {name!r}; its methods: {', '.join(sorted(self.methods))}.",
                            "method", "unknown_method")
        return getattr(self, attribute)


# --- the language model ----------------------------------------------------------------------------

ROLES = ("system", "user", "assistant", "tool")
FINISH_REASONS = ("stop", "tool_calls", "length")
# Generation settings an `infer` input (or the component's attributes, as defaults) may carry to the block.
PASSED_THROUGH = ("tools", "tool_choice", "temperature", "top_p", "max_tokens", "stop", "seed")


def _text_of(content: Any, where: str) -> str | None:
    """Content as the seed writes it (a string, or a list of {"type": "text", "text": ...}) as one string."""
    if content is None or isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise bad_input(f"'{where}' must be a string or a list of text parts.", where, "invalid_type")
    texts = []
    for i, part in enumerate(content):
        if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
            raise bad_input(f"'{where}[{i}]' must be {{\"type\": \"text\", \"text\": <string>}}.", f"{where}[{i}]",
                            "invalid_type")
        texts.append(part["text"])
    return "".join(texts)


def normalized_messages(messages: Any) -> list[dict[str, Any]]:
    if not isinstance(messages, list) or not messages:
        raise bad_input("'messages' must be a non-empty list.", "messages", "invalid_type")
    out = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise bad_input(f"'{where}' must be an object.", where, "invalid_type")
        if message.get("role") not in ROLES:
            raise bad_input(f"'{where}.role' must be one of {', '.join(ROLES)}.", f"{where}.role")
        out.append({**message, "content": _text_of(message.get("content"), f"{where}.content")})
    return out


def _delta_body(text: str, finish_reason: str | None, tool_calls: list | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": [{"type": "text", "text": text}]}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {"message": message, "finish_reason": finish_reason}


class LanguageModel(ComponentType):
    """Any LLM block the caller may use, through the gateway's own pipeline (the access check,
    admission, quotas and metrics of /v1/chat/completions)."""

    name = "language_model"
    aliases = ("tvm_language_model", "openai_language_model")
    methods = {"infer": "infer"}

    async def prepare(self, principal: Principal, attrs: dict[str, Any]) -> dict[str, Any]:
        model = attrs.get("model")
        if not isinstance(model, str) or not model:
            raise bad_input("A language model needs 'model': the id of an LLM block your organization may use.",
                            "attrs.model", "missing_required_parameter")
        try:
            access = await block_access(principal=principal, model=model)
        except GateError as exc:
            available = [name for name, _ in await list_blocks(principal.organization)]
            raise VMFailure(exc.status, f"{exc.message} Models you may use: {', '.join(available) or 'none'}.",
                            code=exc.code, param="attrs.model") from None
        if access.block.kind != Block.LLM or not access.block.backend_type:
            raise bad_input(f"{model!r} is not a runnable LLM block.", "attrs.model", "model_not_runnable")
        return {key: attrs[key] for key in ("model", *PASSED_THROUGH) if key in attrs}

    async def infer(self, principal: Principal, component: Component, inputs: Any) -> AsyncIterator[Any]:
        inputs = _object(inputs, "infer")
        body: dict[str, Any] = {key: value for key, value in component.attrs.items() if key != "model"}
        body.update({key: inputs[key] for key in PASSED_THROUGH if key in inputs})
        body["model"] = component.attrs["model"]
        body["messages"] = normalized_messages(inputs.get("messages"))
        try:
            call = await pipeline.prepare(principal, body, force_stream=True)
        except OpenAIError as exc:
            raise from_openai(exc) from None
        sent = False
        try:
            async with contextlib.aclosing(call.stream()) as deltas:
                async for delta in deltas:
                    if delta.content or delta.tool_calls:
                        sent = True
                        yield _delta_body(delta.content, None, delta.tool_calls)
        except OpenAIError as exc:
            if not sent:
                raise from_openai(exc) from None
            # Mid-stream: the client already holds part of the answer; the last packet says it ended badly.
            yield {**_delta_body("", "error"), "error": exc.message}
            return
        reason = call.finish_reason if call.finish_reason in FINISH_REASONS else "stop"
        yield _delta_body("", reason)


# --- the embedding model ---------------------------------------------------------------------------

class EmbeddingModel(ComponentType):
    """The server's sentence embedding model (registry/embeddings.py, the one discovery uses)."""

    name = "embedding_model"
    aliases = ("tvm_embedding_model",)
    methods = {"infer": "infer"}

    async def prepare(self, principal: Principal, attrs: dict[str, Any]) -> dict[str, Any]:
        model = attrs.get("model", embeddings.EMBEDDING_MODEL)
        if model not in (embeddings.EMBEDDING_MODEL, f"sentence-transformers/{embeddings.EMBEDDING_MODEL}"):
            raise not_found(f"No embedding model {model!r}; available: {embeddings.EMBEDDING_MODEL}.",
                            "attrs.model", "model_not_found")
        return {"model": embeddings.EMBEDDING_MODEL, "dimension": embeddings.EMBEDDING_DIMENSIONS}

    async def infer(self, principal: Principal, component: Component, inputs: Any) -> AsyncIterator[Any]:
        prompt = _object(inputs, "infer").get("prompt")
        if not isinstance(prompt, str):
            raise bad_input("'prompt' must be a string.", "prompt", "invalid_type")
        vectors = await asyncio.to_thread(embeddings.embed_queries, [prompt])
        yield {"embedding": [float(x) for x in vectors[0]]}


# --- the vector store ------------------------------------------------------------------------------

def _vector(value: Any, param: str, dimension: int | None) -> np.ndarray:
    if (not isinstance(value, list) or not value
            or not all(isinstance(x, int | float) and not isinstance(x, bool) for x in value)):
        raise bad_input(f"'{param}' must be a non-empty list of numbers.", param, "invalid_type")
    if len(value) > settings.RUNTIME_VECTOR_MAX_DIMENSION:
        raise bad_input(f"'{param}' has {len(value)} numbers; at most {settings.RUNTIME_VECTOR_MAX_DIMENSION}.",
                        param)
    if dimension is not None and len(value) != dimension:
        raise bad_input(f"'{param}' has {len(value)} numbers; this store's vectors have {dimension}.", param,
                        "dimension_mismatch")
    vector = np.asarray(value, dtype="<f4")
    if not np.all(np.isfinite(vector)):
        raise bad_input(f"'{param}' must hold finite numbers.", param)
    return vector


def _record_id(inputs: Any) -> int:
    record_id = _object(inputs, "this method").get("id")
    if isinstance(record_id, str) and record_id.isdigit():
        record_id = int(record_id)
    if not isinstance(record_id, int) or isinstance(record_id, bool) or record_id < 1:
        raise bad_input("'id' must be the id an insert returned.", "id", "invalid_type")
    return record_id


class VectorStore(ComponentType):
    """Rows of (embedding, document, metadata) in the database, ranked by cosine similarity (an exact
    numpy scan of the store's rows)."""

    name = "vector_store"
    aliases = ("faiss_vector_store", "chromadb_vector_store")
    methods = {"insert": "insert", "insert_many": "insert_many", "retrieve": "retrieve", "get_by_id": "get_by_id",
               "remove": "remove", "clear": "clear"}

    async def prepare(self, principal: Principal, attrs: dict[str, Any]) -> dict[str, Any]:
        if "dimension" not in attrs:
            return {}
        dimension = attrs["dimension"]
        if (not isinstance(dimension, int) or isinstance(dimension, bool)
                or not 1 <= dimension <= settings.RUNTIME_VECTOR_MAX_DIMENSION):
            raise bad_input(f"'dimension' must be an integer from 1 to {settings.RUNTIME_VECTOR_MAX_DIMENSION}.",
                            "attrs.dimension")
        return {"dimension": dimension}

    def _rows(self, component: Component, items: Any, param: str) -> list[tuple[bytes, str, Any]]:
        dimension = component.attrs.get("dimension")
        rows = []
        for i, item in enumerate(items):
            where = f"{param}[{i}]" if param else ""
            if not isinstance(item, dict):
                raise bad_input(f"'{where or 'input'}' must be an object.", where or "input", "invalid_type")
            vector = _vector(item.get("embedding"), f"{where}.embedding".lstrip("."), dimension)
            dimension = len(vector)
            document = item.get("document", "")
            if not isinstance(document, str):
                raise bad_input("'document' must be a string.", f"{where}.document".lstrip("."), "invalid_type")
            metadata = item.get("metadata")
            if metadata is not None and not isinstance(metadata, dict):
                raise bad_input("'metadata' must be an object.", f"{where}.metadata".lstrip("."), "invalid_type")
            # The database stores neither in text or JSON: refused here, not as a failed insert.
            if "\x00" in document or (metadata and b"\\u0000" in orjson.dumps(metadata)):
                raise bad_input("'document' and 'metadata' may not contain NUL characters.",
                                where or "input", "invalid_value")
            rows.append((vector.tobytes(), document, metadata))
        return rows

    @in_db_thread
    def _store(self, component: Component, rows: list[tuple[bytes, str, Any]]) -> list[int]:
        # vectors_insert fixes the store's dimension on its first insert, under the component's row lock.
        return services.vectors_insert(component=component, rows=rows)

    async def insert(self, principal: Principal, component: Component, inputs: Any) -> AsyncIterator[Any]:
        ids = await self._store(component, self._rows(component, [_object(inputs, "insert")], ""))
        yield {"id": str(ids[0])}

    async def insert_many(self, principal: Principal, component: Component, inputs: Any) -> AsyncIterator[Any]:
        items = inputs.get("items") if isinstance(inputs, dict) else inputs
        if not isinstance(items, list) or not items:
            raise bad_input("insert_many takes a non-empty list of {embedding, document, metadata} (or "
                            "{\"items\": [...]}).", "items", "invalid_type")
        ids = await self._store(component, self._rows(component, items, "items"))
        yield {"ids": [str(pk) for pk in ids]}

    async def retrieve(self, principal: Principal, component: Component, inputs: Any) -> AsyncIterator[Any]:
        inputs = _object(inputs, "retrieve")
        query = _vector(inputs.get("query_embedding"), "query_embedding", component.attrs.get("dimension"))
        top_k = inputs.get("top_k", 5)
        if not isinstance(top_k, int) or isinstance(top_k, bool) or not 1 <= top_k <= 1000:
            raise bad_input("'top_k' must be an integer from 1 to 1000.", "top_k")
        yield {"results": await self._nearest(component, query, top_k)}

    @in_db_thread
    def _nearest(self, component: Component, query: np.ndarray, top_k: int) -> list[dict[str, Any]]:
        # The rows are scanned RUNTIME_VECTOR_SCAN_ROWS at a time, keeping the best top_k so far: a store at
        # its limits (100,000 rows of 4,096 floats) would otherwise be 1.6 GB in memory for one query.
        best_ids = np.zeros(0, dtype=np.int64)
        best_scores = np.zeros(0, dtype=np.float32)
        query_norm = float(np.linalg.norm(query))
        for rows in selectors.vector_matrix_batches(component=component, size=settings.RUNTIME_VECTOR_SCAN_ROWS):
            matrix = np.frombuffer(b"".join(raw for _, raw in rows), dtype="<f4").reshape(len(rows), len(query))
            norms = np.linalg.norm(matrix, axis=1) * query_norm
            scores = np.divide(matrix @ query, norms, out=np.zeros(len(rows), dtype=np.float32), where=norms > 0)
            ids = np.concatenate([best_ids, np.fromiter((pk for pk, _ in rows), dtype=np.int64, count=len(rows))])
            scores = np.concatenate([best_scores, scores])
            keep = np.lexsort((ids, -scores))[:top_k]  # best first; ties to the older row (the smaller id)
            best_ids, best_scores = ids[keep], scores[keep]
        records = selectors.vector_records(component=component, ids=[int(pk) for pk in best_ids])
        return [{"id": str(pk), "document": records[pk]["document"], "metadata": records[pk]["metadata"],
                 "similarity": float(score)}
                for pk, score in zip(map(int, best_ids), best_scores, strict=True) if pk in records]

    async def get_by_id(self, principal: Principal, component: Component, inputs: Any) -> AsyncIterator[Any]:
        record_id = _record_id(inputs)
        found = (await in_db_thread(selectors.vector_records)(component=component, ids=[record_id])).get(record_id)
        if found is None:
            raise not_found(f"No row {record_id} in {component.name!r}.", "id")
        yield {"id": str(record_id), "document": found["document"], "metadata": found["metadata"],
               "embedding": [float(x) for x in np.frombuffer(bytes(found["vector"]), dtype="<f4")]}

    async def remove(self, principal: Principal, component: Component, inputs: Any) -> AsyncIterator[Any]:
        record_id = _record_id(inputs)
        if not await in_db_thread(services.vector_remove)(component=component, record_id=record_id):
            raise not_found(f"No row {record_id} in {component.name!r}.", "id")
        yield {"removed": str(record_id)}

    async def clear(self, principal: Principal, component: Component, inputs: Any) -> AsyncIterator[Any]:
        yield {"removed": await in_db_thread(services.vectors_clear)(component=component)}


TYPES: dict[str, ComponentType] = {}
for _type in (LanguageModel(), EmbeddingModel(), VectorStore()):
    for _name in (_type.name, *_type.aliases):
        TYPES[_name] = _type


def component_type(name: Any) -> ComponentType:
    found = TYPES.get(name) if isinstance(name, str) else None
    if found is None:
        raise bad_input(f"Unknown component type {name!r}; types: {', '.join(sorted(TYPES))}.", "component_type",
                        "unknown_component_type")
    return found


