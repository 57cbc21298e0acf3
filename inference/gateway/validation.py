"""The body of POST /v1/chat/completions, checked field by field into a ChatRequest.

Every refusal names the offending `param` the way OpenAI does, so clients show a useful
message. Parameters we do not interpret (presence_penalty, logprobs, vendor extras such as
SGLang's top_k) travel in `extra` to backends that forward them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from inference.backends.base import ChatRequest, EmbeddingRequest
from inference.gateway.errors import invalid
from registry import jsonsafe

MAX_N = 8
# The chat template's overhead where no tokenizer is at hand: ChatML-like templates spend about five
# tokens framing each message (<|im_start|>role\n ... <|im_end|>\n) and three opening the reply.
TEMPLATE_TOKENS_PER_MESSAGE = 5
TEMPLATE_TOKENS_REPLY = 3
MAX_STOP = 4
ROLES = ("system", "developer", "user", "assistant", "tool", "function")
PART_TYPES = ("text", "image_url", "input_audio", "file", "refusal")
RESPONSE_FORMATS = ("text", "json_object", "json_schema")
TOOL_CHOICES = ("none", "auto", "required")
# Fields the gateway reads itself; everything else in the body goes to `extra`.
_READ = {"model", "messages", "temperature", "top_p", "max_tokens", "max_completion_tokens", "stop", "n",
         "seed", "stream", "stream_options", "tools", "tool_choice", "response_format"}


@dataclass
class ChatBody:
    request: ChatRequest
    stream: bool
    include_usage: bool
    estimated_prompt_tokens: int


def parse_json(raw: bytes) -> dict[str, Any]:
    if not raw:
        raise invalid("The request body is empty; send a JSON object.")
    try:
        # NUL may stay in message content (it goes upstream, never into our database); the model
        # name is checked where it is read.
        body = jsonsafe.loads(raw, refuse_nul=False)
    except jsonsafe.UnsafeJSON as exc:
        raise invalid(f"We could not parse the JSON body of your request: {exc.message}",
                      code="invalid_json") from None
    if not isinstance(body, dict):
        raise invalid("The request body must be a JSON object.")
    return body


def check_model_name(model: str) -> None:
    """A model name is looked up in PostgreSQL, whose text cannot hold NUL (a DataError, a 500)."""
    if jsonsafe.has_nul(model):
        raise invalid("'model' must not contain NUL characters (\\u0000).", "model", "invalid_value")


def _number(body: dict, name: str, low: float, high: float) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise invalid(f"'{name}' must be a number.", name, "invalid_type")
    if not low <= value <= high:
        raise invalid(f"'{name}' must be between {low:g} and {high:g}; got {value}.", name, "invalid_value")
    return value


def _integer(body: dict, name: str, low: int, high: int | None = None) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(f"'{name}' must be an integer.", name, "invalid_type")
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise invalid(f"'{name}' must be {bound}; got {value}.", name, "invalid_value")
    return value


def _content_chars(content: Any, param: str, *, optional: bool) -> int:
    if content is None:
        if optional:
            return 0
        raise invalid(f"'{param}' is required.", param, "missing_required_parameter")
    if isinstance(content, str):
        return len(content)
    if not isinstance(content, list):
        raise invalid(f"'{param}' must be a string or a list of content parts.", param, "invalid_type")
    chars = 0
    for i, part in enumerate(content):
        where = f"{param}[{i}]"
        if not isinstance(part, dict) or part.get("type") not in PART_TYPES:
            raise invalid(f"'{where}' must be an object whose 'type' is one of {', '.join(PART_TYPES)}.",
                          where, "invalid_type")
        if part["type"] == "text":
            if not isinstance(part.get("text"), str):
                raise invalid(f"'{where}.text' must be a string.", f"{where}.text", "invalid_type")
            chars += len(part["text"])
    return chars


def _messages(body: dict) -> tuple[list[dict[str, Any]], int]:
    messages = body.get("messages")
    if messages is None:
        raise invalid("'messages' is a required property.", "messages", "missing_required_parameter")
    if not isinstance(messages, list) or not messages:
        raise invalid("'messages' must be a non-empty list.", "messages", "invalid_type")
    chars = 0
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise invalid(f"'{where}' must be an object.", where, "invalid_type")
        role = message.get("role")
        if role not in ROLES:
            raise invalid(f"'{where}.role' must be one of {', '.join(ROLES)}; got {role!r}.",
                          f"{where}.role", "invalid_value")
        # An assistant turn that only calls tools has no content.
        optional = role == "assistant" and bool(message.get("tool_calls") or message.get("function_call"))
        chars += _content_chars(message.get("content"), f"{where}.content", optional=optional)
        if role == "tool" and not isinstance(message.get("tool_call_id"), str):
            raise invalid(f"'{where}.tool_call_id' is required for tool messages.", f"{where}.tool_call_id",
                          "missing_required_parameter")
        if "name" in message and not isinstance(message["name"], str):
            raise invalid(f"'{where}.name' must be a string.", f"{where}.name", "invalid_type")
    return messages, estimate_prompt_tokens(chars, len(messages))


def estimate_prompt_tokens(chars: int, messages: int) -> int:
    """About four characters a token, plus the chat template's framing (none for a raw prompt)."""
    framing = TEMPLATE_TOKENS_PER_MESSAGE * messages + TEMPLATE_TOKENS_REPLY if messages else 0
    return -(-chars // 4) + framing


def _stop(body: dict) -> list[str] | None:
    stop = body.get("stop")
    if stop is None:
        return None
    if isinstance(stop, str):
        return [stop]
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
        raise invalid("'stop' must be a string or a list of strings.", "stop", "invalid_type")
    if len(stop) > MAX_STOP:
        raise invalid(f"'stop' takes at most {MAX_STOP} sequences.", "stop", "invalid_value")
    return stop or None


def _tools(body: dict) -> tuple[list[dict] | None, Any]:
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            raise invalid("'tools' must be a list.", "tools", "invalid_type")
        for i, tool in enumerate(tools):
            function = tool.get("function") if isinstance(tool, dict) else None
            if not isinstance(tool, dict) or tool.get("type") != "function" or not isinstance(function, dict) \
                    or not isinstance(function.get("name"), str):
                raise invalid(f"'tools[{i}]' must be {{'type': 'function', 'function': {{'name': ...}}}}.",
                              f"tools[{i}]", "invalid_value")
    choice = body.get("tool_choice")
    if choice is not None and choice not in TOOL_CHOICES and not isinstance(choice, dict):
        raise invalid(f"'tool_choice' must be one of {', '.join(TOOL_CHOICES)} or an object.", "tool_choice",
                      "invalid_value")
    if isinstance(choice, dict) and not tools:
        raise invalid("'tool_choice' names a tool but 'tools' is empty.", "tool_choice", "invalid_value")
    return tools or None, choice


def _model(body: dict) -> str:
    model = body.get("model")
    if model is None:
        raise invalid("'model' is a required property.", "model", "missing_required_parameter")
    if not isinstance(model, str) or not model.strip():
        raise invalid("'model' must be a non-empty string.", "model", "invalid_type")
    check_model_name(model)
    return model


def _stream(body: dict, force_stream: bool) -> tuple[bool, dict | None]:
    stream = body.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise invalid("'stream' must be a boolean.", "stream", "invalid_type")
    stream = stream or force_stream
    stream_options = body.get("stream_options")
    if stream_options is not None:
        if not isinstance(stream_options, dict):
            raise invalid("'stream_options' must be an object.", "stream_options", "invalid_type")
        if not stream:
            raise invalid("'stream_options' is only allowed when 'stream' is true.", "stream_options",
                          "invalid_value")
        if not isinstance(stream_options.get("include_usage", False), bool):
            raise invalid("'stream_options.include_usage' must be a boolean.", "stream_options.include_usage",
                          "invalid_type")
    return stream, stream_options


def parse_chat_body(body: dict[str, Any], *, force_stream: bool = False) -> ChatBody:
    model = _model(body)
    messages, estimated = _messages(body)
    stream, stream_options = _stream(body, force_stream)

    # Both are checked even when both are given; max_completion_tokens (OpenAI's newer name) wins.
    max_completion_tokens, legacy_max_tokens = _integer(body, "max_completion_tokens", 1), _integer(body, "max_tokens", 1)
    max_tokens = legacy_max_tokens if max_completion_tokens is None else max_completion_tokens
    response_format = body.get("response_format")
    if response_format is not None and (not isinstance(response_format, dict)
                                        or response_format.get("type") not in RESPONSE_FORMATS):
        raise invalid(f"'response_format.type' must be one of {', '.join(RESPONSE_FORMATS)}.",
                      "response_format", "invalid_value")
    tools, tool_choice = _tools(body)

    request = ChatRequest(
        messages=messages,
        model=model,
        max_tokens=max_tokens,
        **_sampling(body),
        tools=tools,
        tool_choice=tool_choice,
        response_format=response_format,
        stream_options=stream_options,
        extra={k: v for k, v in body.items() if k not in _READ},
    )
    include_usage = bool(stream and stream_options and stream_options.get("include_usage"))
    return ChatBody(request=request, stream=stream, include_usage=include_usage,
                    estimated_prompt_tokens=estimated)


def _sampling(body: dict[str, Any]) -> dict[str, Any]:
    """The sampling fields chat and text completions share, validated in this order."""
    return {
        "temperature": _number(body, "temperature", 0, 2),
        "top_p": _number(body, "top_p", 0, 1),
        "stop": _stop(body),
        "n": _integer(body, "n", 1, MAX_N) or 1,
        "seed": _integer(body, "seed", -(2**63)),
    }


# POST /v1/completions: fields the gateway reads; the rest (echo, logprobs, suffix, best_of...) go to `extra`.
_READ_COMPLETION = {"model", "prompt", "temperature", "top_p", "max_tokens", "stop", "n", "seed", "stream",
                    "stream_options"}


def _token_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _prompt(body: dict) -> tuple[str | list[Any], int]:
    prompt = body.get("prompt")
    if prompt is None:
        raise invalid("'prompt' is a required property.", "prompt", "missing_required_parameter")
    if isinstance(prompt, str):
        return prompt, len(prompt)
    # A list of strings, or token ids (a list of integers, or a list of such lists), as OpenAI takes them.
    if isinstance(prompt, list) and prompt:
        if all(isinstance(p, str) for p in prompt):
            return prompt, sum(len(p) for p in prompt)
        if all(_token_id(p) for p in prompt):
            return prompt, 4 * len(prompt)
        if all(isinstance(p, list) and p and all(_token_id(t) for t in p) for p in prompt):
            return prompt, 4 * sum(len(p) for p in prompt)
    raise invalid("'prompt' must be a string, a non-empty list of strings, or token ids.", "prompt", "invalid_type")


def parse_completion_body(body: dict[str, Any]) -> ChatBody:
    """The body of POST /v1/completions, as a ChatRequest with `prompt` set and no messages."""
    model = _model(body)
    prompt, chars = _prompt(body)
    stream, stream_options = _stream(body, False)
    request = ChatRequest(
        messages=[],
        model=model,
        prompt=prompt,
        max_tokens=_integer(body, "max_tokens", 1),
        **_sampling(body),
        stream_options=stream_options,
        extra={k: v for k, v in body.items() if k not in _READ_COMPLETION},
    )
    include_usage = bool(stream and stream_options and stream_options.get("include_usage"))
    return ChatBody(request=request, stream=stream, include_usage=include_usage,
                    estimated_prompt_tokens=estimate_prompt_tokens(chars, 0))


# POST /v1/embeddings: fields the gateway reads; the rest (user, vendor extras) go to `extra`.
_READ_EMBEDDING = {"model", "input", "encoding_format", "dimensions", "input_type"}
ENCODING_FORMATS = ("float", "base64")
# For models trained with a prefix per side (E5): "query" (also for symmetric tasks), "passage" (documents).
INPUT_TYPES = ("query", "passage")
# OpenAI's own caps: 2048 inputs a request.
MAX_EMBEDDING_INPUTS = 2048
MAX_DIMENSIONS = 65536


def _embedding_input(body: dict) -> tuple[list[Any], int]:
    """(the inputs as a list, their characters): a string, a list of strings, or token ids, as OpenAI takes them."""
    value = body.get("input")
    if value is None:
        raise invalid("'input' is a required property.", "input", "missing_required_parameter")
    if isinstance(value, str):
        value = [value]
    elif isinstance(value, list) and value and all(_token_id(t) for t in value):
        value = [value]  # one text as token ids
    if not isinstance(value, list) or not value:
        raise invalid("'input' must be a string, a non-empty list of strings, or token ids.", "input", "invalid_type")
    if len(value) > MAX_EMBEDDING_INPUTS:
        raise invalid(f"'input' takes at most {MAX_EMBEDDING_INPUTS} items.", "input", "invalid_value")
    chars = 0
    for i, item in enumerate(value):
        if isinstance(item, str):
            if not item:
                raise invalid(f"'input[{i}]' is empty; every input needs some text.", f"input[{i}]", "invalid_value")
            chars += len(item)
        elif isinstance(item, list) and item and all(_token_id(t) for t in item):
            chars += 4 * len(item)
        else:
            raise invalid("'input' must be a string, a non-empty list of strings, or token ids.", "input",
                          "invalid_type")
    return value, chars


def parse_embedding_body(body: dict[str, Any]) -> ChatBody:
    """The body of POST /v1/embeddings, as an EmbeddingRequest (a ChatRequest with no messages)."""
    model = _model(body)
    inputs, chars = _embedding_input(body)
    encoding_format = body.get("encoding_format")
    if encoding_format is None:
        encoding_format = "float"
    if encoding_format not in ENCODING_FORMATS:
        raise invalid(f"'encoding_format' must be one of {', '.join(ENCODING_FORMATS)}.", "encoding_format",
                      "invalid_value")
    input_type = body.get("input_type")
    if input_type is not None and input_type not in INPUT_TYPES:
        raise invalid(f"'input_type' must be one of {', '.join(INPUT_TYPES)}.", "input_type", "invalid_value")
    request = EmbeddingRequest(
        messages=[],
        model=model,
        input=inputs,
        encoding_format=encoding_format,
        dimensions=_integer(body, "dimensions", 1, MAX_DIMENSIONS),
        input_type=input_type,
        extra={k: v for k, v in body.items() if k not in _READ_EMBEDDING},
    )
    return ChatBody(request=request, stream=False, include_usage=False,
                    estimated_prompt_tokens=estimate_prompt_tokens(chars, 0))
