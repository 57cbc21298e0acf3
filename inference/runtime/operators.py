"""Operators: stateless functions called by name, from a name -> function registry (a request names
an operator, never a module). Each yields the bodies of its packets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from inference.runtime.calculator import calculator_operator
from inference.runtime.errors import bad_input, not_found
from inference.runtime.http_operator import http_request
from inference.runtime.splitter import split_text_operator
from registry.principal import Principal

# Texts longer than this are split on a thread, so a large document does not hold up the event loop.
SPLIT_ON_THREAD_CHARS = 65_536


async def _echo(principal: Principal, inputs: dict[str, Any]) -> Any:
    return inputs


async def _split_text(principal: Principal, inputs: dict[str, Any]) -> Any:
    text = inputs.get("text")
    if isinstance(text, str) and len(text) > SPLIT_ON_THREAD_CHARS:
        return await asyncio.to_thread(split_text_operator, inputs)
    return split_text_operator(inputs)


async def _calculator(principal: Principal, inputs: dict[str, Any]) -> Any:
    return calculator_operator(inputs)


OPERATORS: dict[str, Callable[[Principal, dict[str, Any]], Awaitable[Any]]] = {
    "echo": _echo,
    "split_text": _split_text,
    "calculator": _calculator,
    "http_request": http_request,
}


async def call_operator(principal: Principal, name: Any, inputs: Any) -> AsyncIterator[Any]:
    operator = OPERATORS.get(name) if isinstance(name, str) else None
    if operator is None:
        raise not_found(f"No operator {name!r}; operators: {', '.join(sorted(OPERATORS))}.", "function",
                        "unknown_operator")
    if not isinstance(inputs, dict):
        raise bad_input("'input' must be an object.", "input", "invalid_type")
    yield await operator(principal, inputs)
