"""Typed signatures: what a program takes and what it must answer, as ax writes them.

The string form and the builder make the same `Signature`:

    parse('"Answers questions" question:string "the question" -> answer:string, sources?:string[]')
    f().description("Answers questions").input("question", f.string("the question"))
       .output("answer", f.string()).output("sources", f.string().array().optional()).build()

Types: string, number, boolean, json, date, datetime, `class "a, b"` (an enum), `type[]` arrays, and
(builder only, as in ax) `f.object({...})` with nested fields. A bad signature raises SignatureError
naming the position. `check_outputs` turns a model's answer (a JSON object, or one `Field Name: value`
per line) into typed values or a list of errors that a repair prompt shows the model.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass, replace
from typing import Any

SCALAR_TYPES = ("string", "number", "boolean", "json", "date", "datetime")
TYPES = (*SCALAR_TYPES, "class", "object")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class SignatureError(ValueError):
    """A signature that cannot be used; `position` is the 0-based offset in the string form (None for the builder)."""

    def __init__(self, message: str, position: int | None = None, text: str | None = None):
        where = ""
        if position is not None:
            where = f" at position {position}"
            if text is not None:
                where += f" (near {text[position:position + 20]!r})" if position < len(text) else " (at the end)"
        super().__init__(f"{message}{where}")
        self.position = position


@dataclass(frozen=True)
class FieldType:
    name: str
    is_array: bool = False
    options: tuple[str, ...] = ()  # class
    fields: tuple[Field, ...] = ()  # object
    description: str = ""
    is_optional: bool = False

    def array(self, description: str | None = None) -> FieldType:
        return replace(self, is_array=True, description=self.description if description is None else description)

    def optional(self) -> FieldType:
        return replace(self, is_optional=True)

    def item_schema(self) -> dict[str, Any]:
        if self.name == "string":
            return {"type": "string"}
        if self.name == "number":
            return {"type": "number"}
        if self.name == "boolean":
            return {"type": "boolean"}
        if self.name == "date":
            return {"type": "string", "format": "date"}
        if self.name == "datetime":
            return {"type": "string", "format": "date-time"}
        if self.name == "class":
            return {"type": "string", "enum": list(self.options)}
        if self.name == "object":
            return object_schema(self.fields)
        return {}  # json: any value

    def json_schema(self) -> dict[str, Any]:
        schema = {"type": "array", "items": self.item_schema()} if self.is_array else self.item_schema()
        if self.description:
            schema = {**schema, "description": self.description}
        return schema

    def label(self) -> str:
        base = f'class "{", ".join(self.options)}"' if self.name == "class" else self.name
        return base + ("[]" if self.is_array else "")


@dataclass(frozen=True)
class Field:
    name: str
    type: FieldType = FieldType("string")
    description: str = ""
    optional: bool = False

    @property
    def title(self) -> str:
        """`userQuestion` / `user_question` -> `User Question` (the field-per-line format's label)."""
        words = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", self.name).replace("_", " ").split()
        return " ".join(w[:1].upper() + w[1:] for w in words)


def object_schema(fields: tuple[Field, ...]) -> dict[str, Any]:
    properties = {}
    for f_ in fields:
        schema = f_.type.json_schema()
        if f_.description and "description" not in schema:
            schema = {**schema, "description": f_.description}
        properties[f_.name] = schema
    return {"type": "object", "properties": properties,
            "required": [f_.name for f_ in fields if not f_.optional], "additionalProperties": False}


@dataclass(frozen=True)
class Signature:
    inputs: tuple[Field, ...]
    outputs: tuple[Field, ...]
    description: str = ""

    def output_schema(self) -> dict[str, Any]:
        return object_schema(self.outputs)

    def input_schema(self) -> dict[str, Any]:
        """The JSON-schema parameters of an agent called as a tool."""
        return object_schema(self.inputs)

    def __str__(self) -> str:
        def one(f_: Field) -> str:
            text = f"{f_.name}{'?' if f_.optional else ''}:{f_.type.label()}"
            return text + (f" {json.dumps(f_.description)}" if f_.description else "")

        head = f"{json.dumps(self.description)} " if self.description else ""
        return head + ", ".join(map(one, self.inputs)) + " -> " + ", ".join(map(one, self.outputs))


def _check(signature: Signature) -> Signature:
    if not signature.inputs:
        raise SignatureError("a signature needs at least one input field")
    if not signature.outputs:
        raise SignatureError("a signature needs at least one output field")
    seen: set[str] = set()
    for f_ in (*signature.inputs, *signature.outputs):
        if f_.name in seen:
            raise SignatureError(f"the field name {f_.name!r} is used twice")
        seen.add(f_.name)
    for f_ in signature.inputs:
        if f_.type.name == "class":
            raise SignatureError(f"the input field {f_.name!r} is a class: classes are for outputs")
    return signature


# -- the string form ---------------------------------------------------------------------------------

class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.pos = 0

    def fail(self, message: str, position: int | None = None) -> SignatureError:
        return SignatureError(message, self.pos if position is None else position, self.text)

    def skip(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def peek(self, token: str) -> bool:
        self.skip()
        return self.text.startswith(token, self.pos)

    def quoted(self) -> str:
        self.skip()
        quote = self.text[self.pos]
        start = self.pos
        end = self.text.find(quote, self.pos + 1)
        if end < 0:
            raise self.fail("an unclosed quote", start)
        self.pos = end + 1
        return self.text[start + 1:end]

    def name(self) -> str:
        self.skip()
        match = _NAME.match(self.text, self.pos)
        if not match:
            raise self.fail("expected a field name (letters, digits, _)")
        self.pos = match.end()
        return match.group()

    def field_type(self) -> FieldType:
        self.skip()
        start = self.pos
        match = _NAME.match(self.text, self.pos)
        if not match:
            raise self.fail("expected a type after ':'")
        name = match.group()
        if name not in TYPES or name == "object":
            known = ", ".join((*SCALAR_TYPES, "class"))
            raise self.fail(f"unknown type {name!r} (known: {known})", start)
        self.pos = match.end()
        options: tuple[str, ...] = ()
        if name == "class":
            if not self.peek('"') and not self.peek("'"):
                raise self.fail('a class needs its options in quotes: class "a, b"')
            at = self.pos
            options = tuple(o.strip() for o in self.quoted().split(",") if o.strip())
            if len(options) < 2 or len(set(options)) != len(options):
                raise self.fail("a class needs at least two different options", at)
        is_array = False
        if self.text.startswith("[]", self.pos):
            self.pos += 2
            is_array = True
        return FieldType(name, is_array=is_array, options=options)

    def one_field(self) -> Field:
        name = self.name()
        optional = False
        if self.text.startswith("?", self.pos):
            self.pos += 1
            optional = True
        field_type = FieldType("string")
        if self.peek(":"):
            self.pos += 1
            field_type = self.field_type()
        description = self.quoted() if self.peek('"') or self.peek("'") else ""
        return Field(name, field_type, description, optional)

    def fields(self, until: str | None) -> tuple[Field, ...]:
        found = [self.one_field()]
        while self.peek(","):
            self.pos += 1
            found.append(self.one_field())
        self.skip()
        if until is not None and not self.peek(until):
            raise self.fail(f"expected ',' or '{until}'")
        if until is None and self.pos < len(self.text):
            raise self.fail("expected ',' or the end of the signature")
        return tuple(found)

    def signature(self) -> Signature:
        description = self.quoted() if self.peek('"') or self.peek("'") else ""
        self.skip()
        if self.peek("->"):
            raise self.fail("a signature needs at least one input field before '->'")
        inputs = self.fields("->")
        self.pos += 2
        self.skip()
        if self.pos >= len(self.text):
            raise self.fail("a signature needs at least one output field after '->'")
        outputs = self.fields(None)
        return Signature(inputs, outputs, description)


def parse(text: str) -> Signature:
    """The Signature a string form describes; SignatureError naming the position otherwise."""
    if not isinstance(text, str) or not text.strip():
        raise SignatureError("a signature is a non-empty string like 'question:string -> answer:string'")
    if "->" not in text:
        raise SignatureError("a signature needs '->' between its inputs and outputs", len(text), text)
    return _check(_Parser(text).signature())


def as_signature(value: str | Signature) -> Signature:
    return value if isinstance(value, Signature) else parse(value)


# -- the builder -------------------------------------------------------------------------------------

class SignatureBuilder:
    def __init__(self) -> None:
        self._inputs: list[Field] = []
        self._outputs: list[Field] = []
        self._description = ""

    def description(self, text: str) -> SignatureBuilder:
        self._description = text
        return self

    @staticmethod
    def _field(name: str, field_type: FieldType, description: str | None) -> Field:
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise SignatureError(f"{name!r} is not a field name (letters, digits, _)")
        if not isinstance(field_type, FieldType):
            raise SignatureError(f"the field {name!r} needs a type such as f.string()")
        return Field(name, replace(field_type, is_optional=False, description=""),
                     description if description is not None else field_type.description, field_type.is_optional)

    def input(self, name: str, field_type: FieldType, description: str | None = None) -> SignatureBuilder:
        self._inputs.append(self._field(name, field_type, description))
        return self

    def output(self, name: str, field_type: FieldType, description: str | None = None) -> SignatureBuilder:
        self._outputs.append(self._field(name, field_type, description))
        return self

    def build(self) -> Signature:
        return _check(Signature(tuple(self._inputs), tuple(self._outputs), self._description))


class _FieldFactory:
    """`f()` starts a signature builder; `f.string()`, `f.number()`, ... make field types."""

    def __call__(self) -> SignatureBuilder:
        return SignatureBuilder()

    @staticmethod
    def string(description: str = "") -> FieldType:
        return FieldType("string", description=description)

    @staticmethod
    def number(description: str = "") -> FieldType:
        return FieldType("number", description=description)

    @staticmethod
    def boolean(description: str = "") -> FieldType:
        return FieldType("boolean", description=description)

    @staticmethod
    def json(description: str = "") -> FieldType:
        return FieldType("json", description=description)

    @staticmethod
    def date(description: str = "") -> FieldType:
        return FieldType("date", description=description)

    @staticmethod
    def datetime(description: str = "") -> FieldType:
        return FieldType("datetime", description=description)

    @staticmethod
    def class_(options: list[str] | tuple[str, ...], description: str = "") -> FieldType:
        options = tuple(options)
        if len(options) < 2 or len(set(options)) != len(options):
            raise SignatureError("a class needs at least two different options")
        return FieldType("class", options=options, description=description)

    @staticmethod
    def object(fields: dict[str, FieldType], description: str = "") -> FieldType:
        if not fields:
            raise SignatureError("an object needs at least one field")
        built = tuple(SignatureBuilder._field(name, t, None) for name, t in fields.items())
        return FieldType("object", fields=built, description=description)


f = _FieldFactory()
setattr(f, "class", f.class_)  # noqa: B010 (ax's spelling, `class` being a keyword: getattr(f, "class"))


# -- checking a model's answer -----------------------------------------------------------------------

class OutputErrors(ValueError):
    """The answer did not fit the signature: one message per problem, shown to the model to repair it."""

    def __init__(self, errors: list[str]):
        super().__init__("; ".join(errors))
        self.errors = errors


def _coerce_item(field_type: FieldType, value: Any, path: str, *, from_text: bool) -> Any:
    kind = field_type.name
    if kind == "string":
        if isinstance(value, str):
            return value
        if from_text or isinstance(value, int | float) and not isinstance(value, bool):
            return str(value) if not isinstance(value, str) else value
        raise ValueError(f"{path} must be a string")
    if kind == "number":
        if isinstance(value, int | float) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                number = float(value.strip().replace(",", ""))
            except ValueError:
                raise ValueError(f"{path} must be a number, got {value[:40]!r}") from None
            return int(number) if number.is_integer() and "." not in value else number
        raise ValueError(f"{path} must be a number")
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "yes", "false", "no"):
            return value.strip().lower() in ("true", "yes")
        raise ValueError(f"{path} must be true or false")
    if kind == "class":
        text = str(value).strip().strip("\"'`.")
        for option in field_type.options:
            if text.lower() == option.lower():
                return option
        raise ValueError(f"{path} must be one of {', '.join(field_type.options)}, got {text[:40]!r}")
    if kind in ("date", "datetime"):
        text = str(value).strip()
        try:
            if kind == "date":
                dt.date.fromisoformat(text)
            else:
                dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            example = "2024-05-01" if kind == "date" else "2024-05-01T12:00:00Z"
            raise ValueError(f"{path} must be an ISO {kind} like {example}, got {text[:40]!r}") from None
        return text
    if kind == "object":
        if isinstance(value, str) and from_text:
            value = _json_value(value, path)
        if not isinstance(value, dict):
            raise ValueError(f"{path} must be an object")
        return check_object(field_type.fields, value, path, from_text=False)
    # json: anything JSON can say; from text it must parse.
    return _json_value(value, path) if from_text and isinstance(value, str) else value


def _json_value(text: str, path: str) -> Any:
    try:
        return json.loads(strip_fences(text))
    except ValueError:
        raise ValueError(f"{path} must be valid JSON") from None


def coerce(field_type: FieldType, value: Any, path: str, *, from_text: bool = False) -> Any:
    if not field_type.is_array:
        return _coerce_item(field_type, value, path, from_text=from_text)
    if isinstance(value, str) and from_text:
        text = strip_fences(value).strip()
        if text.startswith("["):
            value = _json_value(text, path)
        else:  # a list written as lines ("- a") or, on one line, separated by commas
            lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
            if len(lines) > 1 or (lines and lines[0][:2] in ("- ", "* ")):
                value = [re.sub(r"^([-*]|\d+[.)])\s+", "", ln) for ln in lines]
            else:
                value = [v.strip() for v in text.split(",") if v.strip()]
    if not isinstance(value, list):
        raise ValueError(f"{path} must be a list")
    return [_coerce_item(field_type, item, f"{path}[{i}]", from_text=from_text) for i, item in enumerate(value)]


def check_object(fields: tuple[Field, ...], values: dict[str, Any], path: str = "", *,
                 from_text: bool = False) -> dict[str, Any]:
    errors: list[str] = []
    out: dict[str, Any] = {}
    for f_ in fields:
        where = f"{path}.{f_.name}" if path else f_.name
        value = values.get(f_.name)
        if value is None or (isinstance(value, str) and not value.strip() and f_.type.name != "string"):
            if not f_.optional:
                errors.append(f"{where} is missing")
            continue
        try:
            out[f_.name] = coerce(f_.type, value, where, from_text=from_text)
        except OutputErrors as exc:
            errors.extend(exc.errors)
        except ValueError as exc:
            errors.append(str(exc))
    if errors:
        raise OutputErrors(errors)
    return out


def strip_fences(text: str) -> str:
    """The content of a ```json ... ``` block when the model wrapped its answer in one."""
    match = re.search(r"```(?:json|JSON)?\s*\n(.*?)```", text, re.S)
    return match.group(1) if match else text


def parse_json_answer(signature: Signature, text: str) -> dict[str, Any]:
    body = strip_fences(text).strip()
    start = body.find("{")
    if start < 0:
        raise OutputErrors(["the answer must be one JSON object with the output fields"])
    try:
        value, _ = json.JSONDecoder().raw_decode(body[start:])
    except ValueError as exc:
        raise OutputErrors([f"the answer is not valid JSON ({exc.msg} at character {exc.pos})"]) from None
    if not isinstance(value, dict):
        raise OutputErrors(["the answer must be one JSON object with the output fields"])
    return check_object(signature.outputs, value)


def split_lines(fields: tuple[Field, ...], text: str) -> dict[str, str]:
    """`Field Title: value` sections (a value may run over several lines until the next field's label)."""
    labels = {}
    for f_ in fields:
        labels[f_.title.lower()] = f_.name
        labels[f_.name.lower()] = f_.name
    pattern = re.compile(r"^\s*\**(" + "|".join(re.escape(k) for k in sorted(labels, key=len, reverse=True))
                         + r")\**\s*:\s*", re.I | re.M)
    found: dict[str, str] = {}
    matches = list(pattern.finditer(text))
    for i, match in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        name = labels[match.group(1).lower()]
        found.setdefault(name, text[match.end():end].strip())
    return found


def parse_text_answer(signature: Signature, text: str) -> dict[str, Any]:
    found = split_lines(signature.outputs, text)
    if not found and len(signature.outputs) == 1 and text.strip():
        # One output and no label: the whole answer is that field (small models drop the label).
        found = {signature.outputs[0].name: text.strip()}
    return check_object(signature.outputs, found, from_text=True)


def partial_json(text: str) -> dict[str, Any] | None:
    """The object a JSON answer cut mid-stream holds so far (strings cut where they stand), or None."""
    body = text[text.find("{"):] if "{" in text else ""
    if not body:
        return None
    closers: list[str] = []
    in_string = escaped = False
    for ch in body:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "{[":
            closers.append("}" if ch == "{" else "]")
        elif ch in "}]" and closers:
            closers.pop()
    candidate = body + ('"' if in_string else "")
    for trim in (candidate, candidate.rstrip().rstrip(",:")):
        try:
            value = json.loads(trim + "".join(reversed(closers)))
        except ValueError:
            continue
        return value if isinstance(value, dict) else None
    return None
