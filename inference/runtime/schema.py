"""The JSON Schema of a runtime request (POST /v1/runtime's body, a socket frame without `id`), built from
the registries themselves so it names exactly the operators and component types that exist. webapp/openapi.py
puts it in /api/schema/; schemathesis checks the endpoint against it."""

from __future__ import annotations

from typing import Any

from django.conf import settings

from inference.runtime.components import TYPES, EmbeddingModel, LanguageModel, VectorStore
from inference.runtime.splitter import MAX_SEPARATORS
from inference.runtime.vm import COMPONENT_NAME

NAME = {"type": "string", "pattern": COMPONENT_NAME.pattern}
ANY_OBJECT = {"type": "object"}


def _call_function(function: str, inputs: dict[str, Any]) -> dict[str, Any]:
    # `input` defaults to {}: only echo may leave it out, the others need fields of it.
    required = ["type", "function"] if function == "echo" else ["type", "function", "input"]
    return {"type": "object", "required": required, "properties": {
        "type": {"type": "string", "enum": ["call_function"]}, "function": {"type": "string", "enum": [function]},
        "input": inputs}}


def _define(kind: Any, attrs: dict[str, Any], *, attrs_required: bool) -> dict[str, Any]:
    return {"type": "object", "required": ["type", "component_type", "component_name", *(["attrs"] * attrs_required)],
            "properties": {"type": {"type": "string", "enum": ["define_component"]},
                           "component_type": {"type": "string", "enum": [kind.name, *kind.aliases]},
                           "component_name": NAME, "attrs": attrs}}


def request_schema() -> dict[str, Any]:
    max_dimension = settings.RUNTIME_VECTOR_MAX_DIMENSION
    assert set(TYPES) == {n for k in (LanguageModel, EmbeddingModel, VectorStore) for n in (k.name, *k.aliases)}
    return {
        "description": "One runtime request (docs/runtime.md). Refused with 422: a split_text overlap larger than "
                       "its size or so close to it that the chunks would pass 10 times the text, an expression the calculator does not evaluate, an http_request URL or header "
                       "it refuses, a method's input that does not fit the component (its shape depends on the "
                       "component's type), an organization over its component limit.",
        "oneOf": [
            _call_function("echo", ANY_OBJECT),
            _call_function("split_text", {"type": "object", "required": ["text"], "properties": {
                "text": {"type": "string"}, "chunk_size": {"type": "integer", "minimum": 1},
                "chunk_overlap": {"type": "integer", "minimum": 0},
                "separators": {"type": "array", "items": {"type": "string"}, "minItems": 1,
                               "maxItems": MAX_SEPARATORS}}}),
            _call_function("calculator", {"type": "object", "required": ["expression"], "properties": {
                "expression": {"type": "string", "pattern": "\\S"}}}),
            _call_function("http_request", {"type": "object", "required": ["url"], "properties": {
                "url": {"type": "string"},
                "method": {"type": "string", "enum": ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]},
                "headers": {"type": "object", "additionalProperties": {"type": "string"}},
                "body": {"type": "string"}}}),
            _define(LanguageModel, {"type": "object", "required": ["model"], "properties": {
                "model": {"type": "string", "minLength": 1}}}, attrs_required=True),
            _define(EmbeddingModel, {"type": "object", "properties": {"model": {"type": "string"}}},
                    attrs_required=False),
            _define(VectorStore, {"type": "object", "properties": {
                "dimension": {"type": "integer", "minimum": 1, "maximum": max_dimension}}}, attrs_required=False),
            {"type": "object", "required": ["type", "component_name"], "properties": {
                "type": {"type": "string", "enum": ["delete_component"]}, "component_name": NAME}},
            {"type": "object", "required": ["type", "component_name", "method"], "properties": {
                "type": {"type": "string", "enum": ["call_method"]}, "component_name": NAME,
                "method": {"type": "string"}, "input": ANY_OBJECT}},
        ],
        "example": {"type": "call_function", "function": "echo", "input": {"text": "Hello world"}},
    }


ANSWER = {"type": "object", "required": ["packets"], "properties": {
    "packets": {"type": "array", "items": {}, "description": "The bodies of the request's packets, in order."}}}
