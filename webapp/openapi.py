"""drf-spectacular postprocessing: every status an operation can answer, with its body's schema,
and the /v1 gateway, whose consumers are not Django views and so are invisible to the generator.

The schema is a contract that schemathesis checks with all its checks
(tests/gateway/test_schema_conformance.py): a status or body that is not documented here fails it.
"""

from __future__ import annotations

from typing import Any

from inference.gateway.validation import (
    ENCODING_FORMATS,
    INPUT_TYPES,
    MAX_DIMENSIONS,
    MAX_EMBEDDING_INPUTS,
    MAX_N,
    MAX_STOP,
)
from inference.runtime import schema as runtime_schema
from registry.query_schema import block_query_schema, query_node_schema, similarity_schema
from registry.serializers import READ_ONLY_KEYS, RESERVED_IDS

ENVELOPE_ERROR = {
    "type": "object",
    "required": ["success", "message"],
    "properties": {
        "success": {"type": "boolean", "enum": [False]},
        "message": {"type": "string"},
        "errors": {"description": "Per-field validation errors, when the refusal has them."},
    },
}
ENVELOPE_OK = {
    "type": "object",
    "required": ["success", "data"],
    "properties": {"success": {"type": "boolean", "enum": [True]}, "data": {}},
}
OPENAI_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {
        "type": "object",
        "required": ["message", "type", "param", "code"],
        "properties": {"message": {"type": "string"}, "type": {"type": "string"},
                       "param": {"type": "string", "nullable": True}, "code": {"type": "string", "nullable": True}},
    }},
}
REASONS = {
    400: "Bad input: invalid JSON (UTF-8, at most SWITCHBOARD_MAX_JSON_DEPTH levels deep), a NUL character "
         "in any string, path or query value, or a field that fails validation.",
    401: "No API key, or a wrong, expired or revoked one.",
    403: "The caller's role or organization may not do this.",
    404: "Not found, or another organization's (the two are not told apart). A body that names a block, "
         "key or organization that does not exist (or that the caller may not see) is a 404 too.",
    405: "Method not allowed on this path.",
    409: "Conflicts with something that exists.",
    422: "Well-formed, but refused by a rule the schema cannot state: an expiry that has already passed, "
         "a block that falls back to itself, a field that cannot change after creation.",
    413: "The body is larger than the cap (API_MAX_BODY_BYTES on /api and /discovery, GATEWAY_MAX_BODY_BYTES on /v1).",
    415: "The body is not application/json.",
    429: "Over a quota or rate limit; Retry-After says when to come back.",
    502: "The upstream model server failed.",
    503: "A dependency of the gateway is unavailable.",
    504: "The upstream model server timed out.",
}
# 503: PostgreSQL or Redis is down (registry.outages); any /api operation may answer it.
API_ERRORS = (400, 401, 403, 404, 405, 409, 413, 415, 422, 429, 503)
BODY_METHODS = ("post", "put", "patch")


def _error_response(status: int, schema_ref: str) -> dict[str, Any]:
    return {"description": REASONS[status], "content": {"application/json": {"schema": {"$ref": schema_ref}}}}


def _document_api_errors(result: dict) -> None:
    for path, item in result.get("paths", {}).items():
        if not path.startswith(("/api/", "/discovery/")):
            continue
        for method, operation in item.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            responses = operation.setdefault("responses", {})
            for code, response in list(responses.items()):
                # Success replies are the envelope; keep a view's own, more precise schema if it has one.
                if code.startswith("2") and "content" not in response:
                    response["content"] = {"application/json": {"schema": {"$ref": "#/components/schemas/Envelope"}}}
                elif not code.startswith("2"):
                    responses[code] = _error_response(int(code), "#/components/schemas/EnvelopeError")
            for status in API_ERRORS:
                if status in (413, 415) and method not in BODY_METHODS:
                    continue
                responses.setdefault(str(status), _error_response(status, "#/components/schemas/EnvelopeError"))


def _openai_errors(*statuses: int) -> dict[str, Any]:
    return {str(s): _error_response(s, "#/components/schemas/OpenAIError") for s in statuses}


MESSAGE = {
    "type": "object",
    "required": ["role", "content"],
    "properties": {
        "role": {"type": "string", "enum": ["system", "developer", "user", "assistant"]},
        "content": {"type": "string", "description": "Text; a list of content parts is accepted too."},
        "name": {"type": "string"},
    },
}
CHAT_REQUEST = {
    "type": "object",
    "required": ["model", "messages"],
    "description": "OpenAI's chat completion request. Fields the gateway does not read travel to backends "
                   "that forward them.",
    "properties": {
        "model": {"type": "string", "minLength": 1, "pattern": "\\S",
                  "description": "A block id or name your organization may use (see GET /v1/models)."},
        "messages": {"type": "array", "minItems": 1, "items": {"$ref": "#/components/schemas/ChatMessage"}},
        # Every optional field may be null, meaning "not given" (as in OpenAI's own schema).
        "temperature": {"type": "number", "minimum": 0, "maximum": 2, "nullable": True},
        "top_p": {"type": "number", "minimum": 0, "maximum": 1, "nullable": True},
        "max_tokens": {"type": "integer", "minimum": 1, "nullable": True},
        "max_completion_tokens": {"type": "integer", "minimum": 1, "nullable": True},
        "n": {"type": "integer", "minimum": 1, "maximum": MAX_N, "nullable": True},
        "stop": {"nullable": True, "oneOf": [{"type": "string"},
                                             {"type": "array", "items": {"type": "string"}, "maxItems": MAX_STOP}]},
        "seed": {"type": "integer", "minimum": -(2**63), "nullable": True},
        "stream": {"type": "boolean", "nullable": True,
                   "description": "true: the answer comes as text/event-stream chunks."},
    },
    # Not additionalProperties: false: the gateway forwards the fields it does not read.
    "example": {"model": "acme-llm", "messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 8},
}
MODEL = {
    "type": "object",
    "required": ["id", "object", "created", "owned_by"],
    "properties": {"id": {"type": "string"}, "object": {"type": "string", "enum": ["model"]},
                   "created": {"type": "integer"}, "owned_by": {"type": "string"}},
}
CHAT_COMPLETION = {
    "type": "object",
    "required": ["id", "object", "model", "choices"],
    "properties": {"id": {"type": "string"}, "object": {"type": "string"}, "model": {"type": "string"},
                   "choices": {"type": "array"}, "usage": {"type": "object", "nullable": True}},
}
COMPLETION_REQUEST = {
    "type": "object",
    "required": ["model", "prompt"],
    "description": "OpenAI's legacy text completion request. Served by openai and llamacpp blocks; other "
                   "backends answer 400 unsupported_endpoint. Fields the gateway does not read travel to "
                   "backends that forward them; optional fields may be null (not given), as for chat.",
    "properties": {
        "model": {"type": "string", "minLength": 1, "pattern": "\\S"},
        # As OpenAI takes it: text, texts, token ids, or lists of token ids (forwarded to openai blocks;
        # the built-in model takes text only and answers 400 unsupported_parameter to token ids).
        "prompt": {"oneOf": [{"type": "string"},
                             {"type": "array", "minItems": 1, "items": {"type": "string"}},
                             {"type": "array", "minItems": 1, "items": {"type": "integer", "minimum": 0}},
                             {"type": "array", "minItems": 1,
                              "items": {"type": "array", "minItems": 1, "items": {"type": "integer", "minimum": 0}}}]},
        "temperature": {"type": "number", "minimum": 0, "maximum": 2, "nullable": True},
        "top_p": {"type": "number", "minimum": 0, "maximum": 1, "nullable": True},
        "max_tokens": {"type": "integer", "minimum": 1, "nullable": True},
        "n": {"type": "integer", "minimum": 1, "maximum": MAX_N, "nullable": True},
        "stop": {"nullable": True, "oneOf": [{"type": "string"},
                                             {"type": "array", "items": {"type": "string"}, "maxItems": MAX_STOP}]},
        "seed": {"type": "integer", "minimum": -(2**63), "nullable": True},
        "stream": {"type": "boolean", "nullable": True},
    },
    "example": {"model": "acme-llm", "prompt": "The capital of France is", "max_tokens": 8},
}
_TOKEN_IDS = {"type": "array", "minItems": 1, "items": {"type": "integer", "minimum": 0}}
EMBEDDING_REQUEST = {
    "type": "object",
    "required": ["model", "input"],
    "description": "OpenAI's embeddings request. Served by the built-in embedding model (embed-minilm-l6, 384 "
                   "dimensions) and forwarded to OpenAI-compatible (`openai`) blocks; a chat model answers 400 "
                   "unsupported_endpoint.",
    "properties": {
        "model": {"type": "string", "minLength": 1, "pattern": "\\S",
                  "description": "An embedding block your organization may use."},
        "input": {"oneOf": [{"type": "string", "minLength": 1},
                            {"type": "array", "minItems": 1, "maxItems": MAX_EMBEDDING_INPUTS,
                             "items": {"type": "string", "minLength": 1}},
                            _TOKEN_IDS,
                            {"type": "array", "minItems": 1, "maxItems": MAX_EMBEDDING_INPUTS, "items": _TOKEN_IDS}],
                  "description": "Text, texts, or token ids (forwarded to openai blocks; the built-in model "
                                 "answers 400 unsupported_parameter to token ids)."},
        "encoding_format": {"type": "string", "enum": list(ENCODING_FORMATS), "nullable": True,
                            "description": "float (default) or base64 of little-endian float32."},
        "dimensions": {"type": "integer", "minimum": 1, "maximum": MAX_DIMENSIONS, "nullable": True,
                       "description": "Only the model's own size for the built-in model (400 otherwise)."},
        "input_type": {"type": "string", "enum": list(INPUT_TYPES), "nullable": True,
                       "description": "E5's prefix: query (default; also for symmetric tasks) or passage."},
    },
    "example": {"model": "embed-minilm-l6", "input": ["The capital of France is Paris."]},
}
EMBEDDING_LIST = {
    "type": "object",
    "required": ["object", "data", "model", "usage"],
    "properties": {
        "object": {"type": "string", "enum": ["list"]},
        "data": {"type": "array", "items": {
            "type": "object", "required": ["object", "index", "embedding"],
            "properties": {"object": {"type": "string", "enum": ["embedding"]}, "index": {"type": "integer"},
                           "embedding": {"oneOf": [{"type": "array", "items": {"type": "number"}},
                                                   {"type": "string"}]}}}},
        "model": {"type": "string"},
        "usage": {"type": "object", "required": ["prompt_tokens", "total_tokens"],
                  "properties": {"prompt_tokens": {"type": "integer"}, "total_tokens": {"type": "integer"}}},
    },
}
BEARER = [{"bearerAuth": []}]
# One server-sent event (schemathesis validates each event of a text/event-stream reply against it).
SSE_EVENT = {"type": "object", "required": ["data"],
             "description": "data: a chunk (chat.completion.chunk or text_completion) as JSON; the last "
                            "event's data is [DONE].",
             "properties": {"data": {"type": "string"}, "event": {"type": "string"}, "id": {"type": "string"}}}
# On every /v1 answer: the upstream's request id when it sent one, else the gateway's own (also sent
# upstream and logged).
REQUEST_ID_HEADERS = {"x-request-id": {"schema": {"type": "string"},
                                       "description": "The request's id: the upstream's, else the gateway's."}}


def _generation(operation_id: str, summary: str, request_schema: str, answer: str) -> dict[str, Any]:
    """A /v1 generating operation: a JSON answer, or its chunks as server-sent events."""
    return {"post": {
        "operationId": operation_id, "summary": summary, "tags": ["v1"], "security": BEARER,
        "requestBody": {"required": True, "content": _json_of(f"#/components/schemas/{request_schema}")},
        "responses": {
            "200": {"description": f"{answer}, or its chunks as server-sent events.",
                    "headers": REQUEST_ID_HEADERS,
                    "content": {**_json_of("#/components/schemas/ChatCompletion"),
                                "text/event-stream": {"schema": SSE_EVENT}}},
            **_openai_errors(400, 401, 403, 404, 405, 413, 429, 502, 503, 504),
        },
    }}


def _json_of(ref: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": ref}}}


def _v1_paths() -> dict[str, Any]:
    request_id = [{"name": "request_id", "in": "path", "required": True, "schema": {"type": "string"}}]
    return {
        "/v1/chat/completions": _generation("v1_chat_completions",
                                            "Chat completion (OpenAI-compatible), streamed when stream is true",
                                            "ChatCompletionRequest", "The answer"),
        "/v1/completions": _generation("v1_completions",
                                       "Text completion (OpenAI's legacy endpoint), streamed when stream is true",
                                       "CompletionRequest", "The text_completion"),
        "/v1/embeddings": {"post": {
            "operationId": "v1_embeddings", "summary": "Embeddings (OpenAI-compatible)", "tags": ["v1"],
            "security": BEARER,
            "requestBody": {"required": True, "content": _json_of("#/components/schemas/EmbeddingRequest")},
            "responses": {"200": {"description": "The embeddings, in the order of the inputs.",
                                  "headers": REQUEST_ID_HEADERS,
                                  "content": _json_of("#/components/schemas/EmbeddingList")},
                          **_openai_errors(400, 401, 403, 404, 405, 413, 429, 502, 503, 504)},
        }},
        "/v1/models": {"get": {
            "operationId": "v1_models_list", "summary": "The models (blocks) your key may use",
            "tags": ["v1"], "security": BEARER,
            "parameters": [{"name": "kind", "in": "query", "required": False,
                            "schema": {"type": "string", "enum": ["llm", "optimizer"], "default": "llm"},
                            "description": "Which blocks to list: LLMs (the default) or optimizers. Both "
                                           "run on /v1/chat/completions."}],
            "responses": {"200": {"description": "A list.", "content": {"application/json": {"schema": {
                "type": "object", "required": ["object", "data"],
                "properties": {"object": {"type": "string", "enum": ["list"]},
                               "data": {"type": "array", "items": {"$ref": "#/components/schemas/Model"}}}}}}},
                **_openai_errors(400, 401, 405, 503)},
        }},
        "/v1/models/{model}": {"get": {
            "operationId": "v1_models_get", "summary": "One model",
            "tags": ["v1"], "security": BEARER,
            "parameters": [{"name": "model", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {"200": {"description": "The model.", "content": _json_of("#/components/schemas/Model")},
                          **_openai_errors(400, 401, 404, 405, 503)},
        }},
        "/v1/requests/{request_id}/stream": {"get": {
            "operationId": "v1_requests_stream", "summary": "Resume a queued request's token stream "
                                                           "(after Last-Event-ID)",
            "tags": ["v1"], "security": BEARER, "parameters": request_id,
            "responses": {"200": {"description": "Server-sent events.",
                                  "content": {"text/event-stream": {"schema": SSE_EVENT}}},
                          **_openai_errors(400, 401, 404, 405, 503)},
        }},
        "/v1/runtime": {"post": {
            "operationId": "v1_runtime", "summary": "One low-level Runtime request (docs/runtime.md); the socket "
                                                   "/ws/runtime/ streams",
            "tags": ["v1"], "security": BEARER,
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": runtime_schema.request_schema()}}},
            "responses": {"200": {"description": "The bodies of the request's packets.", "headers": REQUEST_ID_HEADERS,
                                  "content": {"application/json": {"schema": runtime_schema.ANSWER}}},
                          **_openai_errors(400, 401, 403, 404, 405, 409, 413, 422, 429, 502, 503, 504)},
        }},
        "/v1/requests/{request_id}/cancel": {"post": {
            "operationId": "v1_requests_cancel", "summary": "Cancel a queued request",
            "tags": ["v1"], "security": BEARER, "parameters": request_id,
            "responses": {"200": {"description": "Cancelled.", "content": {"application/json": {"schema": {
                "type": "object", "required": ["id", "cancelled"],
                "properties": {"id": {"type": "string"}, "object": {"type": "string"},
                               "cancelled": {"type": "boolean"}}}}}},
                **_openai_errors(401, 404, 405, 503)},
        }},
    }


def _tighten_block_write(schemas: dict, paths: dict) -> None:
    """BlockWriteSerializer refuses unknown keys and both spellings of a protocol field at once, and
    PUT/PATCH take their id from the URL (a body may repeat it): the request schemas say so."""
    create = schemas.get("BlockWriteRequest")
    if create is None:
        return
    both = [{"required": [plural, plural[:-1]]} for plural in ("inputProtocols", "outputProtocols")]
    ignored = {key: {"description": "Ignored (accepted so a block read here can be written back as it is)."}
               for key in sorted(READ_ONLY_KEYS)}
    for name in ("BlockWriteRequest", "PatchedBlockWriteRequest"):
        schema = schemas[name]
        schema["properties"].update(ignored)
        schema["properties"]["id"]["not"] = {"enum": sorted(RESERVED_IDS)}
        schema.update(additionalProperties=False, **{"not": {"anyOf": both}})
    replace = {**create, "properties": {k: v for k, v in create["properties"].items() if k != "id"},
               "description": "Every field but the id (the URL's); a field left out gets its default."}
    replace.pop("required", None)
    schemas["BlockReplaceRequest"] = replace
    schemas["PatchedBlockWriteRequest"]["properties"].pop("id")
    schemas["PatchedBlockWriteRequest"]["description"] = "The fields to change; the id is the URL's."
    detail = paths.get("/api/blocks/{block_id}", {})
    if "put" in detail:
        detail["put"]["requestBody"] = {
            "required": True, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/BlockReplaceRequest"}}}}


def _require_bodies(paths: dict) -> None:
    """Raw request schemas (registry.query_schema, the planner's explain) come out of drf-spectacular as
    optional bodies."""
    for path in ("/api/blocks/similarity", "/api/planner/explain"):
        operation = paths.get(path, {}).get("post")
        if operation and "requestBody" in operation:
            operation["requestBody"]["required"] = True


def _planner_explain_request() -> dict[str, Any]:
    """A chat request whose model is "auto" (the default) or "auto:<tag>"."""
    properties = {**CHAT_REQUEST["properties"],
                  "model": {"type": "string", "pattern": "^auto(:.*\\S.*)?$", "default": "auto",
                            "description": '"auto" or "auto:<tag>" (blocks with that tag only).'}}
    properties.pop("stream")
    return {"type": "object", "required": ["messages"], "properties": properties,
            "description": "A /v1/chat/completions body; nothing runs but the planner model, when the mode asks it.",
            "example": {"model": "auto", "messages": [{"role": "user", "content": "Translate 'hello' to German"}]}}


def postprocess(result: dict, generator, request, public) -> dict:
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas.update(QueryNode=query_node_schema(), BlockQuery=block_query_schema(), Similarity=similarity_schema())
    _tighten_block_write(schemas, result.get("paths", {}))
    _require_bodies(result.get("paths", {}))
    schemas.update(Envelope=ENVELOPE_OK, EnvelopeError=ENVELOPE_ERROR, OpenAIError=OPENAI_ERROR, Model=MODEL,
                   ChatMessage=MESSAGE, ChatCompletionRequest=CHAT_REQUEST, ChatCompletion=CHAT_COMPLETION,
                   CompletionRequest=COMPLETION_REQUEST, EmbeddingRequest=EMBEDDING_REQUEST,
                   EmbeddingList=EMBEDDING_LIST, PlannerExplainRequest=_planner_explain_request())
    _document_api_errors(result)
    result.setdefault("paths", {}).update(_v1_paths())
    return result
