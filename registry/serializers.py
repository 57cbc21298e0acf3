"""The block's wire shape (the seed's camelCase) in, model fields out.

Replies are always `Block.to_dict()`; this module only validates input.
"""

from __future__ import annotations

from typing import Any

from django.core.validators import RegexValidator
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from registry.backend_rules import BackendConfigError, check_backend_config
from registry.fields import StrictBooleanField, StrictCharField, StrictChoiceField
from registry.models import Block

BLOCK_ID_RE = r"^[A-Za-z0-9][A-Za-z0-9._:@+-]{0,199}$"
# Path segments under /api/blocks/ that are endpoints, not blocks ("metrics" and "grants" follow
# an id, so "<org-slug>/metrics" would read as a sub-resource, not a qualified id).
# "auto" is what `model: "auto"` asks the planner for (inference/planner/routing.py).
RESERVED_IDS = {"query", "similarity", "metrics", "grants", "auto"}
MAX_LIST_ITEMS = 100
# Keys that Block.to_dict() emits but a client cannot set; accepted and ignored so a
# block fetched from one registry can be posted to another as it is.
READ_ONLY_KEYS = {"organization", "createdAt", "updatedAt"}


def _string_list(value: Any, allow_string: bool = True) -> list[str]:
    """Raises ValueError with a message to prefix with the field name."""
    if isinstance(value, str) and allow_string:
        value = [value]
    if not isinstance(value, list):
        raise ValueError("must be a list of strings")
    if len(value) > MAX_LIST_ITEMS:
        raise ValueError(f"at most {MAX_LIST_ITEMS} items")
    out: list[str] = []
    for item in value:
        kept = item.strip(SCHEMA_WHITESPACE) if isinstance(item, str) else ""
        if not kept or len(item) > 200:
            raise ValueError("every item must be a non-empty string of at most 200 characters")
        if kept not in out:
            out.append(kept)
    return out


# What the schema's `\S` calls whitespace (JSON Schema patterns are ECMA-262 regexes). Python's str.strip()
# also strips the ASCII separators \x1c-\x1f and \x85, which the schema counts as characters: a blank item
# is one the schema refuses too, no more, no less.
SCHEMA_WHITESPACE = "\t\n\v\f\r \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a" \
                    "\u2028\u2029\u202f\u205f\u3000\ufeff"


# What _string_list accepts, for /api/schema/: a string or a list of them, each non-blank, at most 200 long.
PROTOCOL = {"type": "string", "minLength": 1, "maxLength": 200, "pattern": "\\S"}
PROTOCOLS_SCHEMA = {"oneOf": [PROTOCOL, {"type": "array", "maxItems": MAX_LIST_ITEMS, "items": PROTOCOL}]}


@extend_schema_field(PROTOCOLS_SCHEMA)
class ProtocolsField(serializers.JSONField):
    """inputProtocols/outputProtocols: checked by BlockWriteSerializer.validate (_string_list)."""


@extend_schema_field({
    "type": "object",
    "description": "description and tags are the block's; any other key is stored as its metadata.",
    "properties": {"description": {"type": "string", "maxLength": 10_000},
                   "tags": {"type": "array", "maxItems": MAX_LIST_ITEMS, "items": PROTOCOL}},
})
class MetadataField(serializers.DictField):
    """blockMetadata: checked by BlockWriteSerializer.validate_blockMetadata."""


class BackendSerializer(serializers.Serializer):
    type = StrictCharField(max_length=40, allow_blank=True)
    config = serializers.DictField(required=False, default=dict)


class BlockWriteSerializer(serializers.Serializer):
    """Create (all of it), PUT (all but id) and PATCH (partial=True)."""

    id = StrictCharField(
        max_length=200,
        validators=[RegexValidator(BLOCK_ID_RE, "letters, digits and . _ : @ + - only, starting with a letter or digit")],
    )
    name = StrictCharField(max_length=200, required=False, allow_blank=True)
    kind = StrictChoiceField(choices=[k for k, _ in Block.KINDS], required=False)
    blockMetadata = MetadataField(required=False)
    inputProtocols = ProtocolsField(required=False)
    inputProtocol = ProtocolsField(required=False, help_text="Singular spelling of inputProtocols.")
    outputProtocols = ProtocolsField(required=False)
    outputProtocol = ProtocolsField(required=False, help_text="Singular spelling of outputProtocols.")
    backend = BackendSerializer(required=False)
    visibility = StrictChoiceField(choices=[v for v, _ in Block.VISIBILITIES], required=False)
    enabled = StrictBooleanField(required=False)

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise serializers.ValidationError({"non_field_errors": "expected a JSON object (a block)"})
        unknown = sorted(set(data) - set(self.fields) - READ_ONLY_KEYS)
        if unknown:
            raise serializers.ValidationError({key: "unknown field" for key in unknown})
        for plural in ("inputProtocols", "outputProtocols"):
            if plural in data and plural[:-1] in data:
                raise serializers.ValidationError({plural[:-1]: f"give {plural} or {plural[:-1]}, not both"})
        return super().to_internal_value(data)

    def validate_id(self, value: str) -> str:
        if value in RESERVED_IDS:
            raise serializers.ValidationError(f"'{value}' is reserved")
        return value

    def validate_blockMetadata(self, value: dict) -> dict:
        if "description" in value and not isinstance(value["description"], str):
            raise serializers.ValidationError("description must be a string")
        if len(value.get("description") or "") > 10_000:
            raise serializers.ValidationError("description: at most 10000 characters")
        if "tags" in value:
            try:
                value = {**value, "tags": _string_list(value["tags"], allow_string=False)}
            except ValueError as exc:
                raise serializers.ValidationError(f"tags: {exc}") from exc
        return value

    def validate(self, attrs: dict) -> dict:
        out: dict[str, Any] = {}
        if "id" in attrs:
            out["block_id"] = attrs["id"]
        for key in ("name", "kind", "visibility", "enabled"):
            if key in attrs:
                out[key] = attrs[key]
        if "blockMetadata" in attrs:
            meta = dict(attrs["blockMetadata"])
            if "description" in meta:
                out["description"] = meta.pop("description") or ""
            if "tags" in meta:
                out["tags"] = meta.pop("tags")
            # A PATCH merges these extra keys into the stored ones; create and PUT replace.
            out["metadata"] = meta
        for field, column in (("inputProtocol", "input_protocols"), ("outputProtocol", "output_protocols")):
            for spelling in (field + "s", field):
                if spelling in attrs:
                    try:
                        out[column] = _string_list(attrs[spelling])
                    except ValueError as exc:
                        raise serializers.ValidationError({spelling: str(exc)}) from exc
        if "backend" in attrs:
            if "type" not in attrs["backend"]:  # a PATCH is partial, its backend is not
                raise serializers.ValidationError({"backend": {"type": "required whenever backend is given"}})
            out["backend_type"] = attrs["backend"]["type"]
            out["backend_config"] = attrs["backend"].get("config") or {}
            try:
                # context["operator"]: registry.roles.is_operator(caller); absent means a tenant.
                check_backend_config(backend_type=out["backend_type"], config=out["backend_config"],
                                     operator=bool(self.context.get("operator")))
            except BackendConfigError as exc:
                raise serializers.ValidationError({"backend": str(exc)}) from exc
        return out
