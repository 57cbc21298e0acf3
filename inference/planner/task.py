"""The task a conversation asks for, as the planner reads it: what to rank blocks against, and what to tell
a planner model about it."""

from __future__ import annotations

from typing import Any

from inference.backends.base import ChatRequest
from inference.planner.selector import Task

MAX_TASK_CHARS = 2000
MAX_SYSTEM_CHARS = 500


def _text(message: dict[str, Any]) -> str:
    """The message's text; an image or audio part says nothing the ranking can read, so it is skipped."""
    content = message.get("content")
    if isinstance(content, list):
        content = " ".join(part["text"] for part in content
                           if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str))
    return content.strip() if isinstance(content, str) else ""


def task_text(messages: list[dict[str, Any]]) -> str:
    """The last user message (what is asked now); else the last message with text."""
    for message in reversed(messages):
        if message.get("role") == "user" and _text(message):
            return _text(message)[:MAX_TASK_CHARS]
    for message in reversed(messages):
        if _text(message):
            return _text(message)[:MAX_TASK_CHARS]
    return ""


def _schemas(request: ChatRequest) -> tuple[dict[str, Any], ...]:
    schemas = []
    response_format = request.response_format or {}
    if response_format.get("type") == "json_schema":
        described = response_format.get("json_schema") or {}
        schemas.append({"name": f"response format {described.get('name') or ''}".strip(),
                        "description": described.get("description") or "", "schema": described.get("schema")})
    elif response_format.get("type") == "json_object":
        schemas.append({"name": "response format", "description": "a JSON object"})
    for tool in request.tools or []:
        function = tool.get("function") or {}
        schemas.append({"name": f"tool {function.get('name')}", "description": function.get("description") or "",
                        "schema": function.get("parameters")})
    return tuple(schemas)


def task_from_request(request: ChatRequest, *, tag: str | None = None) -> Task:
    system = next((_text(m) for m in request.messages if m.get("role") in ("system", "developer") and _text(m)), "")
    metadata: dict[str, Any] = {"messages": len(request.messages)}
    if system:
        metadata["systemPrompt"] = system[:MAX_SYSTEM_CHARS]
    if tag:
        metadata["tag"] = tag
    if request.tools:
        metadata["usesTools"] = True
    if request.max_tokens:
        metadata["maxTokens"] = request.max_tokens
    return Task(text=task_text(request.messages), metadata=metadata, schemas=_schemas(request))
