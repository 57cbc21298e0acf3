"""Tools an agent may call: a name, a description, JSON-schema parameters and a Python callable
(sync or async). How a tool call travels: natively (`tools` in the chat body, `tool_calls` back) where
the block supports it, otherwise the prompt protocol below."""

from __future__ import annotations

import asyncio
import inspect
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from inference.agents.abort import AgentAborted

_TOOL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}")
# How many characters of a tool's result go back to the model.
MAX_RESULT_CHARS = 20_000


class ToolError(ValueError):
    """A tool definition that cannot be used."""


@dataclass
class Tool:
    name: str
    description: str
    func: Callable[..., Any] | Callable[..., Awaitable[Any]]
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _TOOL_NAME.fullmatch(self.name):
            raise ToolError(f"a tool name is 1-64 letters, digits, _ or -, starting with a letter: {self.name!r}")
        if not isinstance(self.description, str) or not self.description.strip():
            raise ToolError(f"the tool {self.name!r} needs a description")
        if not callable(self.func):
            raise ToolError(f"the tool {self.name!r} needs a callable `func`")
        if not isinstance(self.parameters, dict) or self.parameters.get("type", "object") != "object":
            raise ToolError(f"the tool {self.name!r} takes a JSON-schema object as its parameters")

    def openai(self) -> dict[str, Any]:
        return {"type": "function", "function": {"name": self.name, "description": self.description,
                                                 "parameters": self.parameters}}

    async def call(self, arguments: dict[str, Any]) -> Any:
        if inspect.iscoroutinefunction(self.func):
            return await self.func(**arguments)
        # A plain function may block (a database, a file): never on the event loop the agent runs on.
        result = await asyncio.to_thread(self.func, **arguments)
        return await result if inspect.isawaitable(result) else result


def as_tool(value: Tool | dict[str, Any]) -> Tool:
    """A Tool, or ax's `{name, description, parameters, func}` as a dict."""
    if isinstance(value, Tool):
        return value
    if isinstance(value, dict):
        unknown = set(value) - {"name", "description", "parameters", "func"}
        if unknown:
            raise ToolError(f"unknown tool keys: {', '.join(sorted(unknown))}")
        return Tool(name=value.get("name"), description=value.get("description"), func=value.get("func"),
                    parameters=value.get("parameters") or {"type": "object", "properties": {}})
    raise ToolError(f"a tool is a Tool or a dict with name, description, parameters and func, not {type(value).__name__}")


def result_text(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    if len(text) > MAX_RESULT_CHARS:
        text = text[:MAX_RESULT_CHARS] + f"... [cut at {MAX_RESULT_CHARS} characters]"
    return text


async def run_tool(tools: dict[str, Tool], name: str, raw_arguments: Any) -> tuple[str, bool]:
    """(the text the model sees, whether it failed). A failing tool never ends the run: the model reads
    the error and may try again."""
    tool = tools.get(name)
    if tool is None:
        return f"Error: there is no function named {name!r}; the functions are: {', '.join(tools) or 'none'}", True
    try:
        arguments = json.loads(raw_arguments) if isinstance(raw_arguments, str) else (raw_arguments or {})
    except ValueError as exc:
        return f"Error: the arguments are not valid JSON ({exc})", True
    if not isinstance(arguments, dict):
        return "Error: the arguments must be a JSON object", True
    try:
        return result_text(await tool.call(arguments)), False
    except (asyncio.CancelledError, AgentAborted):
        raise
    except Exception as exc:  # the tool's own failure goes back to the model, as ax does
        return f"Error: {type(exc).__name__}: {exc}", True


# -- the prompt protocol, for blocks without native tool calls ---------------------------------------

CALL_LABEL = "Function Call:"


def protocol_instructions(tools: list[Tool]) -> str:
    lines = ["You may call these functions. To call one, answer with nothing but one line:",
             f'{CALL_LABEL} {{"name": "<function name>", "arguments": {{...}}}}',
             "You will then be given its result. Functions:"]
    for tool in tools:
        lines.append(f"- {tool.name}: {tool.description} Parameters (JSON schema): {json.dumps(tool.parameters)}")
    return "\n".join(lines)


def protocol_calls(text: str) -> list[dict[str, Any]]:
    """The prompt protocol's calls in an answer, as OpenAI-shaped tool calls."""
    calls = []
    for i, match in enumerate(re.finditer(re.escape(CALL_LABEL) + r"\s*(\{.*)", text)):
        try:
            value, _ = json.JSONDecoder().raw_decode(match.group(1))
        except ValueError:
            value = {"name": "", "arguments": match.group(1)}
        if not isinstance(value, dict):
            continue
        arguments = value.get("arguments", {})
        calls.append({"id": f"call_{i}", "type": "function",
                      "function": {"name": str(value.get("name") or ""),
                                   "arguments": arguments if isinstance(arguments, str) else json.dumps(arguments)}})
    return calls
