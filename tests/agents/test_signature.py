"""Signatures: the string form and the builder make one object; bad ones name the position; answers are
typed and checked (JSON and field-per-line)."""

from __future__ import annotations

import pytest

from inference.agents.signature import (
    OutputErrors,
    SignatureError,
    f,
    parse,
    parse_json_answer,
    parse_text_answer,
    partial_json,
)


def test_the_string_form_and_the_builder_make_the_same_signature():
    assert parse("userQuestion:string -> responseText:string") == \
        f().input("userQuestion", f.string()).output("responseText", f.string()).build()


def test_descriptions_optional_fields_arrays_and_classes_match_between_the_two_forms():
    text = ('"Sorts mail" subject:string "the subject line", tags?:string[] -> '
            'category:class "spam, work, home" "where it goes", score:number, urgent:boolean, due:date, '
            'at:datetime, extra:json')
    built = (f().description("Sorts mail").input("subject", f.string("the subject line"))
             .input("tags", f.string().array().optional())
             .output("category", getattr(f, "class")(["spam", "work", "home"], "where it goes"))
             .output("score", f.number()).output("urgent", f.boolean()).output("due", f.date())
             .output("at", f.datetime()).output("extra", f.json()).build())
    assert parse(text) == built
    assert parse(str(built)) == built


@pytest.mark.parametrize(("text", "position", "words"), [
    ("question:strin -> answer", 9, "unknown type 'strin'"),
    ("question -> ", 12, "at least one output"),
    ("-> answer", 0, "at least one input"),
    ("q, -> a", 3, "expected a field name"),
    ("q:string a:string -> b", 9, "expected ',' or '->'"),
    ('q -> a:class "only"', 13, "at least two different options"),
    ('"unclosed q -> a', 0, "unclosed quote"),
])
def test_a_bad_signature_fails_with_a_message_naming_the_position(text, position, words):
    with pytest.raises(SignatureError) as caught:
        parse(text)
    assert caught.value.position == position
    assert words in str(caught.value) and f"position {position}" in str(caught.value)


def test_a_signature_without_an_arrow_or_with_a_field_twice_is_refused():
    with pytest.raises(SignatureError, match="'->'"):
        parse("question answer")
    with pytest.raises(SignatureError, match="used twice"):
        parse("q -> q")
    with pytest.raises(SignatureError, match="classes are for outputs"):
        f().input("kind", f.class_(["a", "b"])).output("x", f.string()).build()


def test_more_than_three_output_fields_a_top_level_array_and_nested_objects_are_checked_from_json():
    person = f.object({"name": f.string(), "age": f.number(), "address": f.object({"city": f.string()})})
    sig = (f().input("text", f.string()).output("people", person.array()).output("count", f.number())
           .output("language", f.class_(["en", "fr"])).output("summary", f.string())
           .output("keywords", f.string().array()).build())
    answer = ('{"people": [{"name": "Ada", "age": 36, "address": {"city": "London"}}], "count": 1, '
              '"language": "EN", "summary": "one person", "keywords": ["math"]}')
    assert parse_json_answer(sig, answer) == {
        "people": [{"name": "Ada", "age": 36, "address": {"city": "London"}}], "count": 1, "language": "en",
        "summary": "one person", "keywords": ["math"]}
    schema = sig.output_schema()
    assert schema["properties"]["people"]["items"]["properties"]["address"]["required"] == ["city"]
    with pytest.raises(OutputErrors) as caught:
        parse_json_answer(sig, '{"people": [{"name": "Ada", "age": "old", "address": {}}], "count": 1, '
                               '"language": "de", "summary": "x", "keywords": "math"}')
    assert set(caught.value.errors) == {"people[0].age must be a number, got 'old'", "people[0].address.city is missing",
                                        "language must be one of en, fr, got 'de'", "keywords must be a list"}


def test_a_field_per_line_answer_is_typed_with_multi_line_values_and_lists():
    sig = parse("q -> answer:string, steps:string[], done:boolean, total:number, data:json")
    text = "Answer: first line\nsecond line\nSteps:\n- one\n- two\nDone: yes\nTotal: 1,024\nData: {\"k\": [1]}"
    assert parse_text_answer(sig, text) == {"answer": "first line\nsecond line", "steps": ["one", "two"],
                                            "done": True, "total": 1024, "data": {"k": [1]}}


def test_an_answer_missing_a_field_or_with_a_bad_date_names_each_error():
    sig = parse("q -> due:date, note?:string, at:datetime")
    with pytest.raises(OutputErrors) as caught:
        parse_text_answer(sig, "Due: tomorrow")
    assert caught.value.errors == ["due must be an ISO date like 2024-05-01, got 'tomorrow'", "at is missing"]


def test_a_json_answer_cut_mid_stream_shows_what_it_holds_so_far():
    assert partial_json('{"answer": "Par') == {"answer": "Par"}
    assert partial_json('{"answer": "Paris", "n": [1, 2') == {"answer": "Paris", "n": [1, 2]}
    assert partial_json("no json yet") is None
