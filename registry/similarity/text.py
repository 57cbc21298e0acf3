"""What of a block is searched: its searchable text, one string built from the fields a person reads.

The same fields feed the embedding (embedding_views, registry.similarity.services) and the lexical
leg of the hybrid policy (registry.similarity.lexical). The text's SHA-256 tells whether a stored
embedding still matches the block.
"""

from __future__ import annotations

import hashlib
from typing import Any

# The Block columns the searchable text is made of: a write that changes none of them keeps the embedding.
SEARCHABLE_FIELDS = ("block_id", "name", "description", "tags", "input_protocols", "output_protocols")


def _words(values: Any) -> list[str]:
    # Tags are often slugs ("text-to-sql"); the model reads words.
    return [str(v).replace("-", " ").replace("_", " ") for v in (values or []) if str(v).strip()]


def searchable_text(*, block_id: str, name: str, description: str, tags: Any, input_protocols: Any,
                    output_protocols: Any) -> str:
    """`Name: description (tags; input a, b; output c)`: the shape measured best in docs/planning.md."""
    text = f"{name or block_id}: {(description or '').strip()}".strip()
    extras = ", ".join(_words(tags))
    protocols = [f"{label} {', '.join(map(str, values))}"
                 for label, values in (("input", input_protocols), ("output", output_protocols)) if values]
    inner = "; ".join(part for part in (extras, *protocols) if part)
    return f"{text} ({inner})" if inner else text


def embedding_views(*, description: str, **fields: Any) -> list[str]:
    """The texts whose embeddings, averaged, make a block's vector: the description alone (how a
    person states what the block does) and the whole searchable text (name, tags, protocols too).
    The average ranked the right block first more often than either text alone (docs/planning.md)."""
    full = searchable_text(description=description, **fields)
    alone = (description or "").strip()
    return [alone, full] if alone and alone != full else [full]


def block_searchable_text(block: Any) -> str:
    return searchable_text(**{field: getattr(block, field) for field in SEARCHABLE_FIELDS})


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
