"""split_text: the recursive splitter's promises, checked on generated texts and parameters (hypothesis),
then a few exact cases and every refused parameter."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inference.runtime.errors import VMFailure
from inference.runtime.splitter import (
    DEFAULT_SEPARATORS,
    MAX_OUTPUT_RATIO,
    MIN_OUTPUT_CHARS,
    split_spans,
    split_text,
    split_text_operator,
)

# Texts made of words, spaces and line breaks (so every separator occurs), and some with none at all.
ALPHABET = st.sampled_from(["a", "b", "c", "xyz", " ", " ", "\n", "\n\n", "\t", "é", "日本"])
TEXTS = st.lists(ALPHABET, max_size=300).map("".join)
SEPARATORS = st.sampled_from([["\n\n", "\n", " ", ""], ["\n\n", "\n", " "], ["\n"], [" ", ""], ["xyz", ""], [""]])


@st.composite
def parameters(draw) -> tuple[int, int, list[str]]:
    size = draw(st.integers(min_value=1, max_value=60))
    overlap = draw(st.integers(min_value=0, max_value=size))
    return size, overlap, draw(SEPARATORS)


def _unsplittable(piece: str, separators: list[str]) -> bool:
    """A piece no separator but the last one cuts further: it may stay whole."""
    return "" not in separators and not any(s and s in piece[1:] for s in separators)


@settings(max_examples=300, deadline=None)
@given(text=TEXTS, params=parameters())
def test_no_chunk_is_longer_than_chunk_size_unless_it_cannot_be_split(text, params):
    size, overlap, separators = params
    for chunk in split_text(text, chunk_size=size, chunk_overlap=overlap, separators=separators):
        assert len(chunk) <= size or _unsplittable(chunk, separators), (chunk, params)


@settings(max_examples=300, deadline=None)
@given(text=TEXTS, params=parameters())
def test_the_chunks_without_their_overlaps_give_the_text_back(text, params):
    size, overlap, separators = params
    spans = split_spans(text, chunk_size=size, chunk_overlap=overlap, separators=separators)
    rebuilt, end = [], 0
    for start, stop in spans:
        assert start < stop and stop > end, "every chunk brings new text, in order"
        if start > end:
            assert text[end:start].isspace(), "only whitespace-only chunks are ever left out"
            rebuilt.append(text[end:start])
        rebuilt.append(text[max(start, end):stop])
        end = stop
    assert text[end:].isspace() or end == len(text)
    assert "".join(rebuilt) + text[end:] == text


@settings(max_examples=300, deadline=None)
@given(text=TEXTS, params=parameters())
def test_consecutive_chunks_overlap_by_at_most_chunk_overlap_characters(text, params):
    size, overlap, separators = params
    spans = split_spans(text, chunk_size=size, chunk_overlap=overlap, separators=separators)
    for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
        assert max(0, end - start) <= overlap


@settings(max_examples=200, deadline=None)
@given(text=TEXTS, params=parameters())
def test_no_chunk_is_whitespace_only_and_each_is_an_exact_slice_of_the_text(text, params):
    size, overlap, separators = params
    spans = split_spans(text, chunk_size=size, chunk_overlap=overlap, separators=separators)
    chunks = split_text(text, chunk_size=size, chunk_overlap=overlap, separators=separators)
    assert chunks == [text[a:b] for a, b in spans]
    assert all(chunk.strip() for chunk in chunks)


def test_paragraphs_are_kept_whole_when_they_fit_and_the_overlap_carries_tail_context():
    text = "one two three four\n\nfive six seven eight\n\nnine ten"
    assert split_text(text, chunk_size=25, chunk_overlap=0) == [
        "one two three four", "\n\nfive six seven eight", "\n\nnine ten"]
    assert split_text("a b c d e f g h", chunk_size=5, chunk_overlap=2) == ["a b c", " c d", " d e", " e f", " f g",
                                                                           " g h"]


def test_a_piece_too_long_for_the_first_separator_is_split_by_the_next():
    # "\n\nword word ..." is too long: "\n" cuts it into "\n" (whitespace only, dropped) and the words,
    # which " " cuts and the merge puts back together up to the size.
    chunks = split_text("short\n\n" + "word " * 10, chunk_size=12, chunk_overlap=0)
    assert chunks == ["short", "\nword word", " word word", " word word", " word word", " word word "]


def test_the_defaults_are_4000_and_200_with_the_four_separators():
    text = ("x" * 3000 + "\n\n") * 4
    chunks = split_text_operator({"text": text})["chunks"]
    # Each separator starts the piece it precedes; the trailing one joins the last chunk, which fits.
    assert [len(c) for c in chunks] == [3000, 3002, 3002, 3004]
    assert split_text_operator({"text": " \n\n \n"})["chunks"] == []


@pytest.mark.parametrize(("text", "separators"), [("x" * 6000, [""]), ("word " * 20_000, DEFAULT_SEPARATORS)])
def test_an_overlap_that_would_multiply_the_text_past_the_limit_is_refused_naming_the_overlap(text, separators):
    # About one chunk of 1,500 characters per character of the text: 9 MB out of 6,000 characters in.
    with pytest.raises(VMFailure) as refused:
        split_text_operator({"text": text, "chunk_size": 1500, "chunk_overlap": 1499, "separators": list(separators)})
    assert refused.value.status == 400 and refused.value.code == "too_many_chunks"
    assert refused.value.param == "chunk_overlap" and refused.value.rule


@pytest.mark.parametrize(("size", "overlap"), [(4000, 200), (1000, 500), (100, 80)])
def test_ordinary_parameters_on_a_long_text_stay_under_the_output_limit(size, overlap):
    text = "word " * 40_000
    chunks = split_text(text, chunk_size=size, chunk_overlap=overlap)
    produced = sum(len(chunk) for chunk in chunks)
    assert len(text) < produced <= MAX_OUTPUT_RATIO * len(text)
    assert max(len(chunk) for chunk in chunks) <= size


def test_a_short_text_may_produce_up_to_the_floor_of_the_output_limit():
    text = "x" * 1000
    chunks = split_text(text, chunk_size=900, chunk_overlap=899, separators=[""])
    assert len(chunks) == 101 and sum(map(len, chunks)) <= MIN_OUTPUT_CHARS


@pytest.mark.parametrize(("inputs", "param"), [
    ({}, "text"),
    ({"text": 5}, "text"),
    ({"text": "a", "chunk_size": 0}, "chunk_size"),
    ({"text": "a", "chunk_size": "10"}, "chunk_size"),
    ({"text": "a", "chunk_size": True}, "chunk_size"),
    ({"text": "a", "chunk_overlap": -1}, "chunk_overlap"),
    ({"text": "a", "chunk_size": 10, "chunk_overlap": 11}, "chunk_overlap"),
    ({"text": "a", "separators": []}, "separators"),
    ({"text": "a", "separators": "\n"}, "separators"),
    ({"text": "a", "separators": ["\n", 3]}, "separators"),
])
def test_bad_parameters_are_refused_naming_the_parameter(inputs, param):
    with pytest.raises(VMFailure) as refused:
        split_text_operator(inputs)
    assert refused.value.status == 400 and refused.value.param == param
