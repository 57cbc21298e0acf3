"""Message content helpers shared by the backends that have no tokenizer of their own."""

from __future__ import annotations

from typing import Any

from inference.backends.base import ChatRequest, UnsupportedFeature


def flatten_content(content: Any) -> str:
    """OpenAI content-part lists become plain text; only text parts are understood."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str):
                texts.append(part["text"])
            elif isinstance(part, str):
                texts.append(part)
            else:
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise UnsupportedFeature(f"content parts of type {kind!r} are not supported by this model; "
                                         "only text parts are")
        return "".join(texts)
    raise UnsupportedFeature("message content must be a string or a list of text parts")


def last_user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return flatten_content(message.get("content"))
    return ""


def input_data_for(request: ChatRequest) -> dict[str, Any]:
    """The seed's free-form input_data: the messages plus the last user text under "text"."""
    data: dict[str, Any] = {"messages": request.messages, "text": last_user_text(request.messages),
                            "model": request.model}
    for name in ("max_tokens", "temperature", "top_p", "stop", "seed", "response_format", "tools"):
        value = getattr(request, name)
        if value is not None:
            data[name] = value
    return data


def approximate_usage(messages: list[dict[str, Any]], text: str) -> dict[str, int]:
    """Whitespace-separated words, for backends that report no token counts (never left empty)."""
    prompt = 0
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        try:
            prompt += len(flatten_content(content).split())
        except UnsupportedFeature:
            continue
    completion = len(text.split())
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
