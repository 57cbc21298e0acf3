"""LLMSelectorPlanner and OptimizerSelector on their own: the prompt, the reply rules, retry and fallback.
`ask` stands in for the planner model (the outside world); nothing else is replaced."""

from __future__ import annotations

import json

from inference.planner.routing import Route
from inference.planner.selector import (
    LLMSelectorPlanner,
    OptimizerSelector,
    PlannerUnavailable,
    Task,
    strip_code_fences,
)
from registry.models import Block

CANDIDATES = [
    {"id": "acme-translate", "description": "Translates German text into English.", "tags": ["translation"],
     "inputProtocols": ["text/plain"], "outputProtocols": ["text/plain"]},
    {"id": "acme-summarize", "description": "Condenses news articles into key points.", "tags": ["summary"],
     "inputProtocols": ["text/plain"], "outputProtocols": ["text/plain"]},
]
TASK = Task(text="Render this paragraph in English: Guten Morgen", metadata={"messages": 1},
            schemas=({"name": "response format answer", "description": "the English text",
                      "schema": {"type": "object"}},))


def scripted(*replies):
    """An ask() that answers with `replies` in turn and keeps what it was asked."""
    asked = []

    async def ask(messages, response_format):
        asked.append((messages, response_format))
        reply = replies[len(asked) - 1]
        if isinstance(reply, Exception):
            raise reply
        return reply

    return ask, asked


def test_code_fences_are_stripped_with_or_without_a_language():
    assert strip_code_fences('```json\n{"id": "a"}\n```') == '{"id": "a"}'
    assert strip_code_fences('Here:\n```\n{"id": "a"}\n```\nDone.') == '{"id": "a"}'
    assert strip_code_fences('  {"id": "a"} ') == '{"id": "a"}'


def test_the_prompt_carries_each_candidates_searchable_representation_the_task_its_metadata_and_schemas():
    messages = LLMSelectorPlanner(scripted()[0]).build_prompt(TASK, CANDIDATES)
    prompt = messages[-1]["content"]
    for candidate in CANDIDATES:
        assert json.dumps(candidate, ensure_ascii=False) in prompt
    assert "Task: Render this paragraph in English: Guten Morgen" in prompt
    assert '"messages": 1' in prompt and "response format answer: the English text" in prompt
    assert '{"id": "<a candidate id>", "reason": "<one short sentence>"}' in messages[0]["content"]


def test_the_response_format_is_a_json_schema_whose_id_is_one_of_the_candidates_or_none():
    schema = LLMSelectorPlanner(scripted()[0]).response_format(CANDIDATES)["json_schema"]["schema"]
    assert schema["properties"]["id"]["enum"] == ["acme-translate", "acme-summarize", "none"]
    assert schema["required"] == ["id", "reason"] and list(schema["properties"]) == ["id", "reason"]
    assert LLMSelectorPlanner(scripted()[0], json_schema=False).response_format(CANDIDATES) is None


async def test_a_fenced_json_answer_is_accepted_with_its_reason():
    ask, asked = scripted('```json\n{"id": "acme-translate", "reason": "German to English"}\n```')
    selection = await LLMSelectorPlanner(ask).select(TASK, CANDIDATES, fallback=["acme-summarize"])
    assert (selection.id, selection.reason, selection.source, selection.attempts) == (
        "acme-translate", "German to English", "planner", 1)
    assert asked[0][1]["type"] == "json_schema"


async def test_an_id_that_is_not_a_candidate_is_sent_back_once_with_the_refusal():
    ask, asked = scripted('{"id": "gpt-4", "reason": "best"}', '{"id": "acme-summarize", "reason": "fixed"}')
    selection = await LLMSelectorPlanner(ask).select(TASK, CANDIDATES, fallback=["acme-translate"])
    assert (selection.id, selection.source, selection.attempts) == ("acme-summarize", "planner", 2)
    retry = asked[1][0]
    assert retry[-2] == {"role": "assistant", "content": '{"id": "gpt-4", "reason": "best"}'}
    assert "'gpt-4' is not one of the candidate ids (acme-translate, acme-summarize)" in retry[-1]["content"]


async def test_two_bad_answers_fall_back_to_the_rankings_first_and_say_why():
    ask, _ = scripted("I think the translator.", '["acme-translate"]')
    selection = await LLMSelectorPlanner(ask).select(TASK, CANDIDATES, fallback=["acme-translate", "acme-summarize"])
    assert (selection.id, selection.source, selection.attempts) == ("acme-translate", "fallback", 2)
    assert "one JSON object" in selection.error


async def test_a_planner_that_cannot_answer_falls_back_without_a_retry():
    ask, asked = scripted(PlannerUnavailable("acme-planner answered 502: down"))
    selection = await LLMSelectorPlanner(ask).select(TASK, CANDIDATES, fallback=["acme-summarize"])
    assert (selection.id, selection.source, len(asked)) == ("acme-summarize", "fallback", 1)
    assert "502" in selection.error


async def test_none_is_an_abstention_and_an_empty_fallback_abstains_too():
    ask, _ = scripted('{"id": "none", "reason": "nothing translates Klingon"}')
    selection = await LLMSelectorPlanner(ask).select(TASK, CANDIDATES)
    assert (selection.id, selection.source, selection.reason) == (None, "planner", "nothing translates Klingon")
    ask, _ = scripted("no", "still no")
    assert (await LLMSelectorPlanner(ask).select(TASK, CANDIDATES, fallback=[])).id is None


async def test_the_optimizer_selector_asks_for_an_optimizer():
    ask, asked = scripted('{"id": "acme-summarize", "reason": "shorter prompt"}')
    selection = await OptimizerSelector(ask).select(TASK, CANDIDATES)
    assert selection.id == "acme-summarize"
    assert "optimizer" in asked[0][0][0]["content"]


def test_the_route_header_is_plain_ascii_whatever_the_planner_wrote():
    route = Route(block=Block(block_id="acme-de"), model="acme-de", mode="plan", score=0.84, runner_up="acme-fr",
                  runner_up_score=0.8, planner="acme-planner", source="planner",
                  reason='Übersetzt "Deutsch"\nins Englische ✓')
    header = route.header()
    assert header == ('mode=plan; score=0.8400; runner-up=acme-fr (0.8000); planner=acme-planner; source=planner; '
                      "reason=\"Ubersetzt 'Deutsch' ins Englische\"")
    header.encode("ascii")
