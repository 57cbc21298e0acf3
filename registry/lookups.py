"""ORM lookups the query compiler needs that Django lacks, for PostgreSQL and SQLite alike.

JSON list membership is written as `@>` on PostgreSQL so a GIN index on the column serves
it, and as `json_each` on SQLite (the embedded default). A JSON value that is a scalar is
treated as a one-element list, so `metadata.region == "eu"` and `metadata.regions == "eu"`
both work without the caller knowing the stored shape.

Every lookup here is NULL-safe (true or false, never NULL), so `NOT (...)` built by
`~Q(...)` keeps rows whose key is missing.
"""

from __future__ import annotations

import json
from typing import Any

from django.db.models import CharField, JSONField, Lookup, TextField
from django.db.models.fields.json import KeyTransform, compile_json_path

SCALAR_TYPES = (str, int, float, bool)


def _sqlite_source(lookup: Lookup, compiler, connection) -> tuple[str, list[Any]]:
    """`col, '$.a.b'`: the two arguments json_each/json_type/json_extract take on SQLite."""
    if isinstance(lookup.lhs, KeyTransform):
        col, params, keys = lookup.lhs.preprocess_lhs(compiler, connection)
        return f"{col}, %s", [*params, compile_json_path(keys)]
    col, params = compiler.compile(lookup.lhs)
    return f"{col}, %s", [*params, "$"]


def _sqlite_type_clause(value: Any) -> tuple[str, list[Any]]:
    """Match one json_each row against a Python scalar, type included ("1" is not 1)."""
    if isinstance(value, bool):
        return ("je.type = 'true'" if value else "je.type = 'false'"), []
    if isinstance(value, int | float):
        return "(je.type IN ('integer', 'real') AND je.value = %s)", [value]
    return "(je.type = 'text' AND je.value = %s)", [value]


class _JsonLookup(Lookup):
    # The value is used as given; JSONField's own preparation would serialize it.
    prepare_rhs = False

    def _pg_lhs(self, compiler, connection) -> tuple[str, list[Any]]:
        sql, params = compiler.compile(self.lhs)
        return sql, list(params)

    def _pg_null_safe(self, sql: str) -> str:
        # A top-level column is NOT NULL, and leaving it bare keeps the GIN index usable.
        return f"COALESCE({sql}, false)" if isinstance(self.lhs, KeyTransform) else sql

    def as_sql(self, compiler, connection):  # other vendors are not supported
        raise NotImplementedError(f"lookup {self.lookup_name} supports PostgreSQL and SQLite only")


def _pg_containment(lookup: Lookup, compiler, connection, value: Any) -> tuple[str, list[Any]] | None:
    """For `metadata.a.b == v`: `metadata @> {"a":{"b":v}} OR metadata @> {"a":{"b":[v]}}`.

    Both probes are on the column itself, so its GIN index serves them; the path form
    `(metadata #> '{a,b}') @> v` means the same but is not indexable. None when the path
    has an all-digit key (an array index, which containment cannot express).
    """
    if not isinstance(lookup.lhs, KeyTransform):
        return None
    col, params, keys = lookup.lhs.preprocess_lhs(compiler, connection)
    if any(str(key).isdigit() for key in keys):
        return None

    def nest(leaf: Any) -> str:
        for key in reversed(keys):
            leaf = {key: leaf}
        return json.dumps(leaf)

    sql = f"({col} @> %s::jsonb OR {col} @> %s::jsonb)"
    return sql, [*params, nest(value), *params, nest([value])]


class HasElement(_JsonLookup):
    """The JSON value is the scalar, or is a list that contains it."""

    lookup_name = "sb_has"

    def as_postgresql(self, compiler, connection):
        contained = _pg_containment(self, compiler, connection, self.rhs)
        if contained is not None:
            return contained
        lhs, params = self._pg_lhs(compiler, connection)
        # `'["a","b"]' @> '"a"'` is true: PostgreSQL lets an array contain a bare scalar.
        return self._pg_null_safe(f"{lhs} @> %s::jsonb"), [*params, json.dumps(self.rhs)]

    def as_sqlite(self, compiler, connection):
        src, params = _sqlite_source(self, compiler, connection)
        clause, clause_params = _sqlite_type_clause(self.rhs)
        sql = (
            f"(COALESCE(json_type({src}), 'null') <> 'object' AND "
            f"EXISTS (SELECT 1 FROM json_each({src}) AS je WHERE {clause}))"
        )
        return sql, [*params, *params, *clause_params]


class HasAnyElement(_JsonLookup):
    """The JSON value is one of the scalars, or is a list sharing at least one of them."""

    lookup_name = "sb_has_any"

    def as_postgresql(self, compiler, connection):
        values = list(self.rhs)
        if not values:
            return "false", []
        if isinstance(self.lhs, KeyTransform):
            parts = [_pg_containment(self, compiler, connection, value) for value in values]
            if all(part is not None for part in parts):
                return "(" + " OR ".join(p[0] for p in parts) + ")", [x for p in parts for x in p[1]]
        lhs, params = self._pg_lhs(compiler, connection)
        # One `@>` per value: each is a GIN index probe, and PostgreSQL ORs the bitmaps.
        sql = " OR ".join(f"{lhs} @> %s::jsonb" for _ in values)
        all_params: list[Any] = []
        for value in values:
            all_params += [*params, json.dumps(value)]
        return self._pg_null_safe(f"({sql})"), all_params

    def as_sqlite(self, compiler, connection):
        src, params = _sqlite_source(self, compiler, connection)
        values = list(self.rhs)
        if not values:
            return "0", []
        clauses, clause_params = [], []
        for value in values:
            clause, extra = _sqlite_type_clause(value)
            clauses.append(clause)
            clause_params += extra
        sql = (
            f"(COALESCE(json_type({src}), 'null') <> 'object' AND "
            f"EXISTS (SELECT 1 FROM json_each({src}) AS je WHERE {' OR '.join(clauses)}))"
        )
        return sql, [*params, *params, *clause_params]


class ElementILike(_JsonLookup):
    """A string or number in the JSON value (itself, or an element of the list) matches the
    LIKE pattern, case-insensitively. The pattern is already escaped, backslash as escape."""

    lookup_name = "sb_elem_ilike"

    def as_postgresql(self, compiler, connection):
        lhs, params = self._pg_lhs(compiler, connection)
        sql = (
            "EXISTS (SELECT 1 FROM jsonb_array_elements(CASE "
            f"WHEN jsonb_typeof({lhs}) = 'array' THEN {lhs} "
            f"WHEN jsonb_typeof({lhs}) IN ('string', 'number') THEN jsonb_build_array({lhs}) "
            "ELSE '[]'::jsonb END) AS e(v) "
            "WHERE jsonb_typeof(e.v) IN ('string', 'number') AND (e.v #>> '{}') ILIKE %s)"
        )
        return sql, [*params, *params, *params, *params, self.rhs]

    def as_sqlite(self, compiler, connection):
        src, params = _sqlite_source(self, compiler, connection)
        sql = (
            f"(COALESCE(json_type({src}), 'null') <> 'object' AND "
            f"EXISTS (SELECT 1 FROM json_each({src}) AS je "
            "WHERE je.type IN ('text', 'integer', 'real') AND je.value LIKE %s ESCAPE '\\'))"
        )
        return sql, [*params, *params, self.rhs]


class JsonEqual(_JsonLookup):
    """The JSON value equals a whole list, object or null."""

    lookup_name = "sb_json_eq"

    def as_postgresql(self, compiler, connection):
        lhs, params = self._pg_lhs(compiler, connection)
        return f"COALESCE({lhs} = %s::jsonb, false)", [*params, json.dumps(self.rhs)]

    def as_sqlite(self, compiler, connection):
        src, params = _sqlite_source(self, compiler, connection)
        if self.rhs is None:
            return f"COALESCE(json_type({src}) = 'null', 0)", params
        return f"COALESCE(json_extract({src}) = json(%s), 0)", [*params, json.dumps(self.rhs)]


class _JsonCompare(_JsonLookup):
    """Order comparison on a JSON value: numbers against numbers, strings against strings.

    A value of any other JSON type never matches, on both databases alike (left to
    themselves, PostgreSQL orders booleans above numbers and SQLite text above numbers).
    """

    operator = ">"

    def as_postgresql(self, compiler, connection):
        lhs, params = self._pg_lhs(compiler, connection)
        if isinstance(self.rhs, str):
            typed = f"(CASE WHEN jsonb_typeof({lhs}) = 'string' THEN ({lhs} #>> '{{}}') END)"
            sql = f'COALESCE({typed} COLLATE "C" {self.operator} %s, false)'
        else:
            typed = f"(CASE WHEN jsonb_typeof({lhs}) = 'number' THEN ({lhs})::numeric END)"
            sql = f"COALESCE({typed} {self.operator} %s, false)"
        return sql, [*params, *params, self.rhs]

    def as_sqlite(self, compiler, connection):
        src, params = _sqlite_source(self, compiler, connection)
        types = "('text')" if isinstance(self.rhs, str) else "('integer', 'real')"
        typed = f"(CASE WHEN json_type({src}) IN {types} THEN json_extract({src}) END)"
        return f"COALESCE({typed} {self.operator} %s, 0)", [*params, *params, self.rhs]


class JsonGreaterThan(_JsonCompare):
    lookup_name = "sb_gt"
    operator = ">"


class JsonGreaterThanOrEqual(_JsonCompare):
    lookup_name = "sb_gte"
    operator = ">="


class JsonLessThan(_JsonCompare):
    lookup_name = "sb_lt"
    operator = "<"


class JsonLessThanOrEqual(_JsonCompare):
    lookup_name = "sb_lte"
    operator = "<="


class ILike(Lookup):
    """Case-insensitive LIKE with the caller's pattern (already escaped, backslash as escape).

    Written as plain `ILIKE` on PostgreSQL so a pg_trgm GIN index on the column serves it;
    Django's icontains wraps the column in UPPER() and would not use one.
    """

    lookup_name = "sb_ilike"
    prepare_rhs = False

    def as_postgresql(self, compiler, connection):
        lhs, params = compiler.compile(self.lhs)
        return f"{lhs} ILIKE %s", [*params, self.rhs]

    def as_sqlite(self, compiler, connection):
        lhs, params = compiler.compile(self.lhs)
        return f"{lhs} LIKE %s ESCAPE '\\'", [*params, self.rhs]

    def as_sql(self, compiler, connection):
        raise NotImplementedError("sb_ilike supports PostgreSQL and SQLite only")


JSON_LOOKUPS = (
    JsonEqual,
    HasElement,
    HasAnyElement,
    ElementILike,
    JsonGreaterThan,
    JsonGreaterThanOrEqual,
    JsonLessThan,
    JsonLessThanOrEqual,
)

for _lookup in JSON_LOOKUPS:
    JSONField.register_lookup(_lookup)
    KeyTransform.register_lookup(_lookup)
CharField.register_lookup(ILike)
TextField.register_lookup(ILike)
