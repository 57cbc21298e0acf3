"""The workflow DSL's template language: `{{ path }}` substitution and nothing else.

A path is dot-separated keys from one of four roots: `input` (the run's input), `nodes.<id>.output`
(an upstream node's output), and, inside a map node, `item` and `index`. Keys index JSON objects and
digits index lists; there are no expressions, filters, calls or attribute lookups, so a document can
never run code or reach a Python object (the values are JSON that the run stored).

A string that is exactly one placeholder takes the value itself (a list stays a list); a placeholder
inside a longer string is replaced by the value's text (strings as they are, anything else as JSON).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

PLACEHOLDER = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
WHOLE = re.compile(r"^\s*\{\{(.*?)\}\}\s*$", re.DOTALL)
SEGMENT = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
ROOTS = ("input", "nodes", "item", "index")
MAX_TEXT = 1_000_000  # characters a rendered string may reach: a template must not balloon a run's rows


class TemplateError(ValueError):
    pass


@dataclass(frozen=True)
class Reference:
    """One parsed placeholder: its root and the keys after it."""

    root: str
    keys: tuple[str, ...]

    @property
    def node_id(self) -> str | None:
        return self.keys[0] if self.root == "nodes" else None

    def __str__(self) -> str:
        return ".".join((self.root, *self.keys))


def parse_path(text: str) -> Reference:
    path = text.strip()
    if not path:
        raise TemplateError("empty placeholder '{{ }}'")
    parts = path.split(".")
    if parts[0] not in ROOTS:
        raise TemplateError(f"'{{{{ {path} }}}}' must start with one of {', '.join(ROOTS)}")
    for part in parts[1:]:
        if not SEGMENT.match(part):
            raise TemplateError(f"'{{{{ {path} }}}}': '{part}' is not a key (letters, digits, '_' and '-' only; "
                                "no expressions)")
    if parts[0] == "nodes" and (len(parts) < 3 or parts[2] != "output"):
        raise TemplateError(f"'{{{{ {path} }}}}': write nodes.<node-id>.output[.<key>...]")
    if parts[0] == "input" and len(parts) < 2:
        raise TemplateError("'{{ input }}' needs a field: {{ input.<name> }}")
    return Reference(root=parts[0], keys=tuple(parts[1:]))


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def references(value: Any) -> list[Reference]:
    """Every placeholder in a JSON value (strings anywhere inside it); raises TemplateError on a bad one."""
    found = []
    for text in _strings(value):
        opened = text.count("{{")
        matches = PLACEHOLDER.findall(text)
        if opened != len(matches):
            raise TemplateError(f"unclosed '{{{{' in {text[:80]!r}")
        found += [parse_path(m) for m in matches]
    return found


def _lookup(context: dict[str, Any], ref: Reference) -> Any:
    if ref.root == "nodes":
        node = context.get("nodes", {}).get(ref.keys[0])
        if node is None:
            raise TemplateError(f"'{ref}': node '{ref.keys[0]}' has no output (it did not run)")
        value, keys = node.get("output"), ref.keys[2:]
    else:
        if ref.root not in context:
            raise TemplateError(f"'{ref}' is not available here")
        value, keys = context[ref.root], ref.keys
    walked = [ref.root] if ref.root != "nodes" else list(ref.keys[:2])
    for key in keys:
        walked.append(key)
        if isinstance(value, dict) and key in value:
            value = value[key]
        elif isinstance(value, list) and key.isdigit() and int(key) < len(value):
            value = value[int(key)]
        else:
            raise TemplateError(f"'{ref}': {'.'.join(walked[:-1]) or ref.root} has no '{key}'")
    return value


def as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def render(value: Any, context: dict[str, Any]) -> Any:
    """`value` with every placeholder replaced from `context` ({"input", "nodes", "item", "index"})."""
    if isinstance(value, dict):
        return {k: render(v, context) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, context) for v in value]
    if not isinstance(value, str) or "{{" not in value:
        return value
    whole = WHOLE.match(value)
    if whole and value.count("{{") == 1:
        return _lookup(context, parse_path(whole.group(1)))
    text = PLACEHOLDER.sub(lambda m: as_text(_lookup(context, parse_path(m.group(1)))), value)
    if len(text) > MAX_TEXT:
        raise TemplateError(f"a rendered template is {len(text)} characters long (at most {MAX_TEXT})")
    return text
