"""The URL converter for a block reference: a plain id, or a qualified id "<org-slug>/<block-id>"."""

from __future__ import annotations

from django.urls import register_converter


class BlockRefConverter:
    # One optional "/" (ids never hold one). A second segment "metrics" or "grants" is the
    # sub-resource of a plain id, not a qualified id: those two words are reserved block ids.
    regex = r"[^/]+(?:/(?!(?:metrics|grants)(?:/|$))[^/]+)?"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(BlockRefConverter, "blockref")
