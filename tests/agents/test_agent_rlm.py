"""`agent(..., rlm={...})` end to end through the gateway's pipeline, on scripted fake models (one block
each for the Actor, llm_query's sub-model and the Responder): a 200,000-character context read through
the sandbox with batched llm_query and done(), the limits, actor fields, option precedence and stop()."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest

from inference.agents.abort import AgentAborted
from inference.agents.agent import AgentConfigError, agent
from inference.agents.gateway_ai import GatewayAI
from inference.agents.tools import Tool

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

DESCRIPTION = "Finds facts in documents far longer than a model's window"
NEEDLE = "The vault code is 4711."
CONTEXT = ("Quarterly notes. " * 12_000)[:151_234] + NEEDLE
CONTEXT += "x" * (200_000 - len(CONTEXT))


def code(text: str) -> str:
    return f"```python\n{text}\n```"


@pytest.fixture
def blocks(org, upstream_block, fake_upstream):
    """await blocks(actor=[...], sub=[...], responder=[...]) -> a GatewayAI on the `base` block; each role
    has its own scripted block (agent-<role>) that actor_options, sub_model and responder_options name."""

    async def make(**replies) -> GatewayAI:
        for role in ("base", "actor", "sub", "responder"):
            url = fake_upstream.script(f"rlm{role}", *replies.get(role, ["unused"]))
            await asyncio.to_thread(upstream_block, org, block_id=f"agent-{role}", config={"base_url": url})
        return GatewayAI("agent-base", organization=org)

    return make


def sent(fake_upstream, role: str) -> list[dict]:
    return fake_upstream.stats.scripted_bodies.get(f"rlm{role}", [])


def reader(**rlm):
    return agent("context:string, question:string -> answer:string", name="vault reader", description=DESCRIPTION,
                 rlm={"context_fields": ["context"], "sub_model": "agent-sub", **rlm},
                 actor_options={"model": "agent-actor"}, responder_options={"model": "agent-responder"})


async def test_an_rlm_agent_reads_a_200000_character_context_with_batched_llm_query_and_done(blocks,
                                                                                          fake_upstream):
    ai = await blocks(
        actor=[code("print(len(context))"),
               code("pieces = [context[i:i + 5000] for i in range(0, len(context), 5000)]\n"
                    "answers = llm_query([{'query': 'The vault code?', 'context': p} for p in pieces])\n"
                    "print(len(answers), sorted(set(answers)))\ndone()")],
        sub=["not in this part"],
        responder=['{"answer": "4711"}'])
    events = [event async for event in reader().events(ai, {"context": CONTEXT, "question": "What is the code?"})]
    assert events[-1].type == "done" and events[-1].data["output"] == {"answer": "4711"}
    assert events[-1].data["rlm"] == {"ended_by": "done", "turns": 2, "llm_calls": 40}
    turns = [event.data for event in events if event.type == "actor_turn"]
    assert [turn["result"] for turn in turns] == ["200000", "40 ['not in this part']"]
    # The context reached the sub-model in 40 pieces, the one with the needle among them, and never a prompt
    # of the Actor or the Responder.
    subs = [body["messages"][-1]["content"] for body in sent(fake_upstream, "sub")]
    assert len(subs) == 40 and sum(NEEDLE in prompt for prompt in subs) == 1
    for role in ("actor", "responder"):
        for body in sent(fake_upstream, role):
            assert NEEDLE not in json.dumps(body)
    assert "`context`: str, 200,000 characters" in sent(fake_upstream, "actor")[0]["messages"][0]["content"]
    responder_prompt = sent(fake_upstream, "responder")[0]["messages"][-1]["content"]
    assert "Action 2:\npieces = " in responder_prompt and "What is the code?" in responder_prompt
    assert sent(fake_upstream, "base") == []


async def test_the_limits_cut_turns_sub_model_calls_and_results(blocks, fake_upstream):
    ai = await blocks(actor=[code("print(llm_query(['a', 'b', 'c', 'd']))\nprint('z' * 500)"),
                             code("print('still no done')")],
                      sub=["an answer"], responder=['{"answer": "partial"}'])
    result = await reader(max_turns=2, max_llm_calls=3, max_runtime_chars=200).forward(
        ai, {"context": "short", "question": "q"})
    assert result == {"answer": "partial"}
    assert len(sent(fake_upstream, "actor")) == 2 and len(sent(fake_upstream, "sub")) == 3
    log = sent(fake_upstream, "responder")[0]["messages"][-1]["content"]
    assert "'an answer', 'an answer', 'an answer', '[ERROR] max_llm_calls reached" in log
    assert "more characters cut; max_runtime_chars is 200" in log


async def test_actor_fields_are_typed_and_the_responder_writes_only_the_others(blocks, fake_upstream):
    ai = await blocks(actor=["confidence: 0.9\n" + code("print(len(context))\ndone()")],
                      responder=['{"answer": "a short text"}'])
    scorer = agent("context:string -> answer:string, confidence:number", name="scorer", description=DESCRIPTION,
                   rlm={"context_fields": ["context"], "actor_fields": ["confidence"]},
                   actor_options={"model": "agent-actor"}, responder_options={"model": "agent-responder"})
    assert await scorer.forward(ai, {"context": "abc"}) == {"answer": "a short text", "confidence": 0.9}
    schema = sent(fake_upstream, "responder")[0]["response_format"]["json_schema"]["schema"]
    assert schema["required"] == ["answer"]


async def test_options_go_constructor_then_actor_or_responder_options_then_forward(blocks, fake_upstream):
    ai = await blocks(actor=[code("done()")], responder=['{"answer": "x"}'])
    tuned = agent("context:string -> answer:string", name="tuned agent", description=DESCRIPTION, temperature=0.5,
                  max_tokens=50, rlm={"context_fields": ["context"]},
                  actor_options={"model": "agent-actor", "temperature": 0.1},
                  responder_options={"model": "agent-responder", "max_tokens": 300})
    await tuned.forward(ai, {"context": "c"}, temperature=0.9)
    actor, responder = sent(fake_upstream, "actor")[0], sent(fake_upstream, "responder")[0]
    assert (actor["temperature"], actor["max_tokens"]) == (0.9, 50)
    assert (responder["temperature"], responder["max_tokens"]) == (0.9, 300)


async def test_stop_during_a_sub_query_aborts_the_rlm_agent(org, upstream_block, blocks, fake_upstream):
    ai = await blocks(actor=[code("llm_query('this one hangs')")])
    await asyncio.to_thread(upstream_block, org, scenario="wait30000", block_id="agent-hanging")
    hanging = reader(sub_model="agent-hanging")
    aborted_before = fake_upstream.stats.waits_aborted
    threading.Timer(1.0, hanging.stop).start()
    with pytest.raises(AgentAborted):
        await asyncio.wait_for(hanging.forward(ai, {"context": "c", "question": "q"}), timeout=20)
    for _ in range(50):
        if fake_upstream.stats.waits_aborted > aborted_before:
            break
        await asyncio.sleep(0.05)
    assert fake_upstream.stats.waits_aborted == aborted_before + 1


def test_rlm_options_that_cannot_work_are_refused_naming_the_problem():
    signature = "context:string, question:string -> answer:string, confidence:number"
    with pytest.raises(AgentConfigError, match="rlm context field 'document' is not an input field"):
        agent(signature, name="reader", description=DESCRIPTION, rlm={"context_fields": ["document"]})
    with pytest.raises(AgentConfigError, match="rlm actor field 'score' is not an output field"):
        agent(signature, name="reader", description=DESCRIPTION,
              rlm={"context_fields": ["context"], "actor_fields": ["score"]})
    with pytest.raises(AgentConfigError, match="no output for the Responder"):
        agent(signature, name="reader", description=DESCRIPTION,
              rlm={"context_fields": ["context"], "actor_fields": ["answer", "confidence"]})
    with pytest.raises(AgentConfigError, match="unknown rlm option 'contextFields'"):
        agent(signature, name="reader", description=DESCRIPTION, rlm={"contextFields": ["context"]})
    with pytest.raises(AgentConfigError, match="actor_options and responder_options are for RLM mode"):
        agent(signature, name="reader", description=DESCRIPTION, actor_options={"temperature": 0})
    with pytest.raises(AgentConfigError, match="unknown actor_options: thinking"):
        agent(signature, name="reader", description=DESCRIPTION, rlm={"context_fields": ["context"]},
              actor_options={"thinking": 1})


async def test_streaming_forward_of_an_rlm_agent_streams_the_responders_answer(blocks):
    ai = await blocks(actor=[code("print(context[:5])\ndone()")], responder=['{"answer": "streamed in pieces"}'])
    pieces = [piece async for piece in reader().streaming_forward(ai, {"context": CONTEXT, "question": "q"})]
    assert pieces[-1].done and pieces[-1].values == {"answer": "streamed in pieces"}
    grown = "".join(piece.delta.get("answer", "") for piece in pieces[:-1])
    assert len(pieces) > 3 and grown == "streamed in pieces"


async def test_tools_and_child_agents_are_called_from_the_sandbox_and_recorded_as_tool_calls(blocks):
    ai = await blocks(actor=[code("print(word_count(text=context))\nprint(agents.fact_finder(topic='Paris'))\ndone()")],
                      base=['{"facts": ["Paris is a city"]}'], responder=['{"answer": "Paris is a city"}'])
    child = agent("topic:string -> facts:string[]", name="fact-finder", description="Finds facts about a topic")
    counter = Tool(name="word_count", description="Counts the words of a text", func=lambda text: len(text.split()),
                   parameters={"type": "object", "properties": {"text": {"type": "string"}}})
    parent = agent("context:string, question:string -> answer:string", name="researcher", description=DESCRIPTION,
                   functions=[counter], agents=[child], rlm={"context_fields": ["context"]},
                   actor_options={"model": "agent-actor"}, responder_options={"model": "agent-responder"})
    events = [event async for event in parent.events(ai, {"context": "one two three", "question": "Paris?"})]
    turn = next(event.data for event in events if event.type == "actor_turn")
    assert turn["result"] == "3\n{'facts': ['Paris is a city']}"
    calls = [(event.data["name"], event.data["sandbox"]) for event in events if event.type == "tool_call"]
    assert calls == [("word_count", True), ("fact-finder", True)]
    assert [event.data.get("actor", False) for event in events if event.type == "step"] == [True, False]
    assert events[-1].data["output"] == {"answer": "Paris is a city"}
