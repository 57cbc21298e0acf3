"""RLM mode's Actor loop, driven by a scripted fake model: a 200,000-character context read through
code and batched llm_query, the limits (max_llm_calls, max_turns, max_runtime_chars, the batch's
concurrency), the ways a loop ends, actor fields and callback, option precedence, a sandbox killed
mid-loop, and stop()."""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path

import pytest

from inference.agents.abort import AbortSignal, AgentAborted
from inference.agents.rlm import RLM, RLMConfig, RLMConfigError, Tool, extract_code, extract_fields

pytestmark = pytest.mark.slow

NEEDLE = "The vault code is 4711."
# 200,000 characters with one sentence that matters, at 151,234.
CONTEXT = ("Quarterly notes. " * 12_000)[:151_234] + NEEDLE
CONTEXT += "x" * (200_000 - len(CONTEXT))


def live_children() -> set[int]:
    """This process's children that are still running (the sandbox processes are among them)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == os.getpid() and fields[0] != "Z":
            found.add(int(stat.parent.name))
    return found


def code(text: str) -> str:
    return f"```python\n{text}\n```"


class ScriptedModel:
    """The model behind `complete`: the Actor's replies in order; sub-queries answered from their
    context (or by `sub_answer`); every call recorded with its options; in-flight sub-queries counted."""

    def __init__(self, *actor_replies: str, sub_answer=None, sub_delay: float = 0.0):
        self.actor_replies = list(actor_replies)
        self.sub_answer = sub_answer
        self.sub_delay = sub_delay
        self.actor_calls: list[tuple[list[dict], dict]] = []
        self.sub_calls: list[tuple[list[dict], dict]] = []
        self.in_flight = 0
        self.most_in_flight = 0

    async def complete(self, messages: list[dict], options: dict) -> str:
        if messages[0]["content"].startswith("You are the Actor"):
            self.actor_calls.append((messages, options))
            return self.actor_replies.pop(0) if self.actor_replies else "I am finished."
        self.sub_calls.append((messages, options))
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.sub_delay)
            prompt = messages[-1]["content"]
            if self.sub_answer is not None:
                return self.sub_answer(prompt)
            return "4711" if "4711" in prompt else "nothing here"
        finally:
            self.in_flight -= 1


async def respond_from_log(inputs: dict, action_log: str, options: dict) -> dict:
    return {"answer": "4711" if "'4711'" in action_log else "unknown"}


def rlm(model: ScriptedModel, **options) -> RLM:
    extra = {key: options.pop(key) for key in ("options", "actor_options", "responder_options", "tools",
                                                  "agents", "abort") if key in options}
    return RLM(RLMConfig.from_options({"context_fields": ["context"], **options}), complete=model.complete,
               description="Find the vault code in the notes", output_fields=["answer"], **extra)


async def test_rlm_reads_a_200000_character_context_with_batched_llm_query_and_done():
    model = ScriptedModel(
        code("print(len(context))\nprint(context[:40])"),
        code("pieces = [context[i:i + 5000] for i in range(0, len(context), 5000)]\n"
             "answers = llm_query([{'query': 'What is the vault code?', 'context': p} for p in pieces])\n"
             "found = [a for a in answers if a != 'nothing here']\nprint(len(pieces), found)\ndone()"),
        sub_delay=0.02)
    outputs, trace = await rlm(model).forward({"context": CONTEXT, "question": "What is the code?"},
                                              respond_from_log)
    assert outputs == {"answer": "4711"}
    assert trace.ended_by == "done" and len(trace.turns) == 2
    assert trace.llm_calls == 40 and len(model.sub_calls) == 40
    assert model.most_in_flight == 8
    assert "Action 2:\npieces = " in trace.action_log and "40 ['4711']" in trace.action_log
    # The context never enters a prompt: the Actor sees its size, and its own action log.
    for messages, _ in model.actor_calls:
        prompt = "\n".join(message["content"] for message in messages)
        assert NEEDLE not in prompt and "`context`: str, 200,000 characters" in prompt
        assert "question: What is the code?" in prompt


async def test_max_llm_calls_caps_sub_queries_and_the_extra_items_say_error():
    model = ScriptedModel(code("batch = llm_query(['a', 'b', 'c', 'd', 'e'])\nprint(batch)\n"
                               "print(llm_query('one more'))\ndone()"))
    _, trace = await rlm(model, max_llm_calls=3).forward({"context": "short"}, respond_from_log)
    assert len(model.sub_calls) == 3 and trace.llm_calls == 3
    result = trace.turns[0].result
    assert result.count("nothing here") == 3
    assert result.count("[ERROR] max_llm_calls reached") == 3


async def test_a_failed_batch_item_returns_error_and_the_others_their_answers_a_single_failure_raises():
    def answer(prompt: str) -> str:
        if "explode" in prompt:
            raise ConnectionError("upstream went away")
        return "fine"

    model = ScriptedModel(code("print(llm_query(['ok', 'explode', 'ok again']))\ndone()\nllm_query('explode')"),
                          sub_answer=answer)
    _, trace = await rlm(model).forward({"context": "c"}, respond_from_log)
    assert "['fine', '[ERROR] ConnectionError: upstream went away', 'fine']" in trace.turns[0].result
    # A single call that fails raises in the code instead.
    assert "RuntimeError: llm_query: ConnectionError: upstream went away" in trace.turns[0].result


async def test_the_loop_stops_after_max_turns_when_the_code_never_calls_done():
    model = ScriptedModel(*[code(f"step = {n}\nprint(step)") for n in range(10)])
    _, trace = await rlm(model, max_turns=3).forward({"context": "c"}, respond_from_log)
    assert trace.ended_by == "max_turns" and len(trace.turns) == 3 and len(model.actor_calls) == 3
    assert [turn.result for turn in trace.turns] == ["0", "1", "2"]


async def test_a_reply_without_code_ends_the_loop_and_the_responder_still_answers():
    model = ScriptedModel("The answer is obvious, no code needed.")
    outputs, trace = await rlm(model).forward({"context": "c"}, respond_from_log)
    assert trace.ended_by == "no_code" and trace.turns == [] and outputs == {"answer": "unknown"}


async def test_final_ends_the_loop_and_its_value_reaches_the_action_log():
    model = ScriptedModel(code("final(answer='4711', source='page 3')"), code("print('never runs')"))
    _, trace = await rlm(model).forward({"context": "c"}, respond_from_log)
    assert trace.ended_by == "final" and trace.final == {"answer": "4711", "source": "page 3"}
    assert trace.action_log.endswith('Final: {"answer": "4711", "source": "page 3"}\n')


async def test_results_and_sub_query_contexts_are_cut_to_max_runtime_chars():
    model = ScriptedModel(code("print(context)\nllm_query('what?', context)\ndone()"))
    _, trace = await rlm(model, max_runtime_chars=1000).forward({"context": "z" * 20_000}, respond_from_log)
    result = trace.turns[0].result
    assert result.startswith("z" * 1000 + "\n...[") and "max_runtime_chars is 1,000" in result
    assert len(result) < 1200
    sub_prompt = model.sub_calls[0][0][-1]["content"]
    assert sub_prompt.count("z") == 1000 and "max_runtime_chars is 1,000" in sub_prompt


async def test_variables_persist_between_turns_and_the_actor_sees_earlier_results():
    model = ScriptedModel(code("words = context.split()\nprint(len(words))"),
                          code("print(words[-1])\ndone()"))
    _, trace = await rlm(model).forward({"context": "alpha beta gamma"}, respond_from_log)
    assert [turn.result for turn in trace.turns] == ["3", "gamma"]
    second_prompt = model.actor_calls[1][0][-1]["content"]
    assert "Action 1:\nwords = context.split()\nprint(len(words))\nResult:\n3" in second_prompt


async def test_actor_fields_come_from_the_actor_and_the_callback_sees_every_turn():
    seen = []
    model = ScriptedModel("reasoning: look at the size first\n" + code("print(len(context))"),
                          "reasoning: enough seen\n" + code("done()"))
    outputs, trace = await rlm(model, actor_fields=["reasoning"], actor_callback=seen.append).forward(
        {"context": "abc"}, respond_from_log)
    assert outputs == {"answer": "unknown", "reasoning": "enough seen"}
    assert [(turn["turn"], turn["python_code"], turn["reasoning"]) for turn in seen] == [
        (1, "print(len(context))", "look at the size first"), (2, "done()", "enough seen")]
    assert seen[0]["result"] == "3"
    assert "reasoning: look at the size first\nAction 1:" in trace.action_log
    assert "reasoning" in model.actor_calls[0][0][0]["content"]


async def test_options_go_constructor_then_actor_or_responder_options_then_the_calls_own():
    model = ScriptedModel(code("llm_query('q')\ndone()"))
    responded = {}

    async def respond(inputs, action_log, options):
        responded.update(options)
        return {"answer": "x"}

    runner = rlm(model, sub_model="small-block",
                 options={"temperature": 0.5, "max_tokens": 100, "model": "base"},
                 actor_options={"temperature": 0.1, "model": "actor-block"},
                 responder_options={"max_tokens": 900})
    await runner.forward({"context": "c"}, respond, {"model": "per-call"})
    assert model.actor_calls[0][1] == {"temperature": 0.1, "max_tokens": 100, "model": "per-call"}
    assert responded == {"temperature": 0.5, "max_tokens": 900, "model": "per-call"}
    assert model.sub_calls[0][1] == {"temperature": 0.5, "max_tokens": 100, "model": "small-block"}


async def test_tools_are_globals_and_child_agents_live_under_agents():
    async def summarize(text: str) -> dict:
        return {"summary": text.upper()}

    tools = [Tool(name="word_count", description="Counts words.", function=lambda text: len(text.split()),
                  parameters={"type": "object", "properties": {"text": {"type": "string"}}})]
    agents = [Tool(name="summarizer", description="Summarizes a text.", function=summarize)]
    model = ScriptedModel(code("print(word_count(text=context))\nprint(word_count({'text': 'a b'}))\n"
                               "print(agents.summarizer({'text': 'hi'}))\ndone()"))
    _, trace = await rlm(model, tools=tools, agents=agents).forward({"context": "one two three"},
                                                                    respond_from_log)
    assert trace.turns[0].result == "3\n2\n{'summary': 'HI'}"
    system = model.actor_calls[0][0][0]["content"]
    assert "`word_count(**arguments)`: Counts words." in system and "`agents.summarizer(" in system


async def test_a_killed_sandbox_is_reported_to_the_actor_and_the_next_turn_gets_a_fresh_session():
    model = ScriptedModel(code("notes = 'mine'\nopen('/etc/passwd').read()"),
                          code("print(len(context))\nprint(notes)"), code("done()"))
    _, trace = await rlm(model).forward({"context": "abcd"}, respond_from_log)
    assert trace.turns[0].result.startswith("[sandbox killed: file system access refused: open(")
    assert trace.sandbox_kills == ["file system access refused: open('/etc/passwd', 'r')"]
    assert trace.turns[1].result.startswith("4\nTraceback") and "NameError" in trace.turns[1].result
    assert trace.ended_by == "done"


async def test_stop_from_another_thread_aborts_the_loop_and_kills_the_sandbox():
    abort = AbortSignal()
    model = ScriptedModel(code("llm_query('slow')"), sub_delay=30)
    runner = rlm(model, abort=abort)
    threading.Timer(0.5, abort.abort, args=("stopped by the user",)).start()
    with pytest.raises(AgentAborted, match="stopped by the user"):
        await asyncio.wait_for(runner.forward({"context": "c"}, respond_from_log), timeout=10)
    assert len(model.sub_calls) == 1 and len(runner.sandbox_pids) == 1
    await asyncio.sleep(0.3)
    assert runner.sandbox_pids[0] not in live_children()


def test_bad_rlm_options_name_the_option():
    with pytest.raises(RLMConfigError, match="unknown rlm option 'maxTurns'"):
        RLMConfig.from_options({"context_fields": ["c"], "maxTurns": 3})
    with pytest.raises(RLMConfigError, match="context_fields"):
        RLMConfig.from_options({"max_turns": 3})
    with pytest.raises(RLMConfigError, match="max_llm_calls must be a positive integer"):
        RLMConfig.from_options({"context_fields": ["c"], "max_llm_calls": 0})


async def test_a_context_field_missing_from_the_values_is_refused_before_any_call():
    model = ScriptedModel(code("done()"))
    with pytest.raises(RLMConfigError, match="context field 'context'"):
        await rlm(model).forward({"question": "q"}, respond_from_log)
    assert model.actor_calls == []


def test_code_and_actor_fields_are_read_from_the_reply():
    reply = "reasoning: two\nlines\n```python\nx = 1\n```\nand\n```py\nprint(x)\n```"
    assert extract_code(reply) == "x = 1\nprint(x)"
    assert extract_fields(reply, ["reasoning"]) == {"reasoning": "two\nlines\n\nand"}
