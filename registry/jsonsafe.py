"""Request JSON that cannot hurt the server: one decoder for the REST API and the gateway.

orjson refuses invalid UTF-8, lone surrogates, NaN/Infinity and nesting past 1,024 levels by
itself (the stdlib decoder recursed into a RecursionError, a 500). What it accepts can still
break us later: JSON nested a few hundred levels deep overflows orjson.dumps and the stdlib
encoder behind JSONField, and a NUL character ("\\u0000") is valid JSON that PostgreSQL text
and jsonb cannot store (psycopg raises DataError, a 500). So the decoded value is walked once,
without recursion, for depth and, where the caller stores strings, for NUL.
"""

from __future__ import annotations

from typing import Any

import orjson
from django.conf import settings

NUL = "\x00"


class UnsafeJSON(ValueError):
    """A body we refuse; `message` names the offending place the way our validation errors do."""

    def __init__(self, message: str, path: str = ""):
        super().__init__(message)
        self.message = message
        self.path = path


def max_depth() -> int:
    return settings.SWITCHBOARD_MAX_JSON_DEPTH


def _where(path: list[str]) -> str:
    return ".".join(path) if path else "body"


def check_value(value: Any, *, refuse_nul: bool, depth_limit: int | None = None) -> None:
    """Raise UnsafeJSON if `value` nests deeper than the limit or (with refuse_nul) holds a NUL
    character in any key or string."""
    limit = max_depth() if depth_limit is None else depth_limit
    stack: list[tuple[Any, int, list[str]]] = [(value, 0, [])]
    while stack:
        item, depth, path = stack.pop()
        if isinstance(item, str):
            if refuse_nul and NUL in item:
                raise UnsafeJSON(f"{_where(path)}: NUL characters (\\u0000) are not allowed", _where(path))
            continue
        if not isinstance(item, dict | list):
            continue
        if depth >= limit:
            raise UnsafeJSON(f"{_where(path)}: JSON nested deeper than {limit} levels is not accepted",
                             _where(path))
        if isinstance(item, dict):
            for key, child in item.items():
                if refuse_nul and NUL in key:
                    raise UnsafeJSON(f"{_where(path)}: NUL characters (\\u0000) are not allowed in keys",
                                     _where(path))
                stack.append((child, depth + 1, [*path, key]))
        else:
            for index, child in enumerate(item):
                stack.append((child, depth + 1, [*path[:-1], f"{path[-1]}[{index}]"] if path else [f"[{index}]"]))


def loads(raw: bytes | str, *, refuse_nul: bool) -> Any:
    """Decode a request body; UnsafeJSON says why it was refused."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise UnsafeJSON(f"the body is not valid JSON (UTF-8, at most {max_depth()} levels deep): {exc}") from None
    check_value(value, refuse_nul=refuse_nul)
    return value


def has_nul(text: str) -> bool:
    return NUL in text


def without_nul(value: Any) -> Any:
    """`value` with every NUL character removed from its strings and keys: for what we record rather
    than refuse (a model's answer, a tool's result, a logged prompt), which PostgreSQL could not store.
    Stripped, not escaped: a reader sees the text less the NULs, never a made-up escape sequence."""
    if isinstance(value, str):
        return value.replace(NUL, "") if NUL in value else value
    if isinstance(value, dict):
        return {without_nul(k): without_nul(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [without_nul(v) for v in value]
    return value
