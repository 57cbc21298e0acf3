"""`split_text`: the recursive character splitter, on offsets into the text.

The semantics of LangChain's RecursiveCharacterTextSplitter (keep_separator="start"): take the first
separator that occurs in the text, split there keeping each separator at the start of the piece it
precedes, merge pieces into chunks of up to `chunk_size` characters keeping up to `chunk_overlap`
characters of tail context from one chunk to the next, recurse with the remaining separators into pieces
still too long, and drop chunks that are whitespace only. Two things differ, on purpose:

- chunks are never stripped: each one is an exact slice of the text, so the chunks, their overlaps
  removed, give the text back (up to the whitespace-only chunks that were dropped); LangChain strips
  each chunk, which loses the text around every cut (bench/runtime.py compares the stripped chunks);
- everything is done on (start, end) offsets and the text is sliced once per chunk, not rebuilt by
  string concatenation at every level of the recursion (bench/runtime.py measures the difference).

And one limit LangChain does not have: the chunks produced may hold at most MAX_OUTPUT_RATIO times the
text's characters (never less than MIN_OUTPUT_CHARS). An overlap close to the size makes nearly one chunk
per character (6,000 characters in, 9 MB out); such a request is refused as the chunks are produced,
before the output is built, instead of taking the server's time and memory.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any

from inference.runtime.errors import bad_input

DEFAULT_CHUNK_SIZE = 4000
DEFAULT_CHUNK_OVERLAP = 200
DEFAULT_SEPARATORS = ("\n\n", "\n", " ", "")
MAX_SEPARATORS = 32
# Ordinary parameters produce about (1 + overlap / (size - overlap)) times the text: 1.05 for the defaults,
# 2 for an overlap of half the size. The floor keeps short texts free of the limit.
MAX_OUTPUT_RATIO = 10
MIN_OUTPUT_CHARS = 1_000_000

Span = tuple[int, int]


class _Chunks:
    """The chunks' spans as they are produced; refused once they hold more characters than `budget`."""

    def __init__(self, budget: int):
        self.spans: list[Span] = []
        self.left = budget
        self.budget = budget

    def append(self, span: Span) -> None:
        self.left -= span[1] - span[0]
        if self.left < 0:
            raise bad_input(f"These parameters would produce chunks of more than {self.budget} characters in all "
                            f"({MAX_OUTPUT_RATIO} times the text, at least {MIN_OUTPUT_CHARS}): make "
                            "'chunk_overlap' smaller next to 'chunk_size'.", "chunk_overlap", "too_many_chunks",
                            rule=True)
        self.spans.append(span)


def _pieces(text: str, start: int, end: int, separator: str) -> list[Span]:
    """The spans of text[start:end] cut before every occurrence of `separator` (empty ones left out)."""
    if not separator:
        return [(i, i + 1) for i in range(start, end)]
    pieces: list[Span] = []
    cut = start
    found = text.find(separator, start, end)
    while found != -1:
        if found > cut:
            pieces.append((cut, found))
        cut = found
        found = text.find(separator, found + len(separator), end)
    if end > cut:
        pieces.append((cut, end))
    return pieces


def _merge(pieces: list[Span], chunk_size: int, chunk_overlap: int, out: _Chunks) -> None:
    """Adjacent pieces into chunks of at most chunk_size, each starting with up to chunk_overlap
    characters of the previous one's tail (LangChain's _merge_splits, on spans)."""
    current: deque[Span] = deque()
    total = 0
    for piece in pieces:
        length = piece[1] - piece[0]
        if current and total + length > chunk_size:
            out.append((current[0][0], current[-1][1]))
            while total > chunk_overlap or (total + length > chunk_size and total > 0):
                first = current.popleft()
                total -= first[1] - first[0]
        current.append(piece)
        total += length
    if current:
        out.append((current[0][0], current[-1][1]))


def _split(text: str, start: int, end: int, separators: Sequence[str], chunk_size: int, chunk_overlap: int,
           out: _Chunks) -> None:
    rest: Sequence[str] = ()
    separator = separators[-1]
    for i, candidate in enumerate(separators):
        if candidate == "" or text.find(candidate, start, end) != -1:
            separator, rest = candidate, separators[i + 1:]
            break
    good: list[Span] = []
    for piece in _pieces(text, start, end, separator):
        if piece[1] - piece[0] < chunk_size:
            good.append(piece)
            continue
        if good:
            _merge(good, chunk_size, chunk_overlap, out)
            good = []
        if rest:
            _split(text, piece[0], piece[1], rest, chunk_size, chunk_overlap, out)
        else:
            out.append(piece)  # No separator left: a piece that cannot be split stays whole.
    if good:
        _merge(good, chunk_size, chunk_overlap, out)


def split_spans(text: str, *, chunk_size: int = DEFAULT_CHUNK_SIZE, chunk_overlap: int = DEFAULT_CHUNK_OVERLAP,
                separators: Sequence[str] = DEFAULT_SEPARATORS) -> list[Span]:
    """The chunks as (start, end) offsets into `text`, in order; whitespace-only chunks left out. A
    VMFailure (400, `too_many_chunks`) when they would hold more than the limit the module states."""
    out = _Chunks(max(MAX_OUTPUT_RATIO * len(text), MIN_OUTPUT_CHARS))
    if text:
        _split(text, 0, len(text), tuple(separators), chunk_size, chunk_overlap, out)
    return [(a, b) for a, b in out.spans if not text[a:b].isspace()]


def split_text(text: str, *, chunk_size: int = DEFAULT_CHUNK_SIZE, chunk_overlap: int = DEFAULT_CHUNK_OVERLAP,
               separators: Sequence[str] = DEFAULT_SEPARATORS) -> list[str]:
    return [text[a:b] for a, b in split_spans(text, chunk_size=chunk_size, chunk_overlap=chunk_overlap,
                                              separators=separators)]


def _whole_number(value: Any, param: str, minimum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise bad_input(f"'{param}' must be an integer of at least {minimum}.", param)
    return value


def split_text_operator(inputs: dict[str, Any]) -> dict[str, Any]:
    """The operator: {text, chunk_size?, chunk_overlap?, separators?} -> {chunks}, every parameter checked."""
    text = inputs.get("text")
    if not isinstance(text, str):
        raise bad_input("'text' must be a string.", "text", "invalid_type")
    chunk_size = _whole_number(inputs.get("chunk_size", DEFAULT_CHUNK_SIZE), "chunk_size", 1)
    chunk_overlap = _whole_number(inputs.get("chunk_overlap", DEFAULT_CHUNK_OVERLAP), "chunk_overlap", 0)
    if chunk_overlap > chunk_size:
        raise bad_input(f"'chunk_overlap' ({chunk_overlap}) may not be larger than 'chunk_size' ({chunk_size}).",
                        "chunk_overlap", rule=True)
    separators = inputs.get("separators", list(DEFAULT_SEPARATORS))
    if (not isinstance(separators, list) or not separators or len(separators) > MAX_SEPARATORS
            or not all(isinstance(s, str) for s in separators)):
        raise bad_input(f"'separators' must be a list of 1 to {MAX_SEPARATORS} strings.", "separators")
    return {"chunks": split_text(text, chunk_size=chunk_size, chunk_overlap=chunk_overlap, separators=separators)}
