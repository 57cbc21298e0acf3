"""Turning the seed's free-form `input_data` into a chat request."""

from __future__ import annotations

from typing import Any

from inference.backends.base import ChatRequest


def messages_from_input(input_data: dict[str, Any]) -> list[dict[str, Any]]:
    """The seed passes {"prompts": [...]} or {"text": ...}; OpenAI clients pass {"messages": [...]}."""
    for key in ("messages", "prompts"):
        value = input_data.get(key)
        if isinstance(value, list) and value:
            return value
    for key in ("text", "prompt", "query", "input"):
        value = input_data.get(key)
        if isinstance(value, str) and value:
            return [{"role": "user", "content": value}]
    raise ValueError("input_data needs 'messages', 'prompts', 'text' or 'prompt'")


def chat_request_from_input(input_data: dict[str, Any], *, model: str) -> ChatRequest:
    return ChatRequest(
        messages=messages_from_input(input_data),
        model=model,
        max_tokens=input_data.get("max_tokens"),
        temperature=input_data.get("temperature"),
        top_p=input_data.get("top_p"),
        stop=input_data.get("stop"),
        seed=input_data.get("seed"),
    )
