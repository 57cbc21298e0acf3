"""The agent loop against a scripted fake model (tests/support/fake_upstream.py) through the gateway's
pipeline in this process (GatewayAI) and over HTTP (HttpAI): tools, child agents, the repair retry, the
fallback to the prompt protocol, streaming and stop() mid-stream."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest

from inference.agents.abort import AgentAborted
from inference.agents.agent import AgentConfigError, AgentOutputError, AgentStepsExceeded, agent
from inference.agents.ai import AIError, ChatResult, HttpAI
from inference.agents.gateway_ai import GatewayAI
from inference.agents.signature import f
from inference.agents.tools import Tool
from inference.models import PlannerConfig
from inference.planner.services import planner_config_update

pytestmark = pytest.mark.django_db(transaction=True)

DESCRIPTION = "Answers the user's questions with the tools it has"


@pytest.fixture
def scripted(org, upstream_block, fake_upstream):
    """await scripted(name, *replies, scenario="") -> a GatewayAI for `org` on a block answering with `replies`."""

    async def make(name: str, *replies, scenario: str = "") -> GatewayAI:
        url = fake_upstream.script(name, *replies, scenario=scenario)
        # The ORM is synchronous: the block is made on a thread of its own.
        await asyncio.to_thread(upstream_block, org, block_id=f"agent-{name}", config={"base_url": url})
        return GatewayAI(f"agent-{name}", organization=org)

    return make


def sent(fake_upstream, name: str) -> list[dict]:
    return fake_upstream.stats.scripted_bodies.get(name, [])


def test_an_agent_refuses_a_short_name_description_or_definition_and_bad_options():
    with pytest.raises(AgentConfigError, match="name must be at least 5"):
        agent("q -> a", name="abc", description=DESCRIPTION)
    with pytest.raises(AgentConfigError, match="description must be at least 20"):
        agent("q -> a", name="helper", description="too short")
    with pytest.raises(AgentConfigError, match="definition, when given, must be at least 100"):
        agent("q -> a", name="helper", description=DESCRIPTION, definition="Be brief.")
    with pytest.raises(AgentConfigError, match="bad signature: unknown type 'strng'"):
        agent("q:strng -> a", name="helper", description=DESCRIPTION)
    with pytest.raises(AgentConfigError, match="max_steps"):
        agent("q -> a", name="helper", description=DESCRIPTION, max_steps=0)
    with pytest.raises(AgentConfigError, match="temperature"):
        agent("q -> a", name="helper", description=DESCRIPTION, temperature=3)


async def test_a_tool_call_runs_the_function_and_its_result_goes_back_to_the_model(scripted, fake_upstream):
    seen = []

    def weather(city: str) -> dict:
        seen.append(city)
        return {"city": city, "celsius": 21}

    tool = Tool(name="weather", description="The weather in a city", func=weather,
                parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})
    ai = await scripted("tools1", {"tool_calls": [{"name": "weather", "arguments": {"city": "Paris"}}]},
                  '{"answer": "21 degrees in Paris", "celsius": 21}')
    helper = agent("question:string -> answer:string, celsius:number", name="weatherman",
                   description=DESCRIPTION, functions=[tool])
    assert await helper.forward(ai, {"question": "How warm is Paris?"}) == {"answer": "21 degrees in Paris",
                                                                            "celsius": 21}
    assert seen == ["Paris"]
    first, second = sent(fake_upstream, "tools1")
    assert first["tools"][0]["function"]["name"] == "weather"
    assert first["response_format"]["json_schema"]["schema"]["required"] == ["answer", "celsius"]
    assert second["messages"][-1] == {"role": "tool", "tool_call_id": "call_0",
                                      "content": '{"city": "Paris", "celsius": 21}'}


async def test_a_failing_tool_tells_the_model_its_error_and_the_run_goes_on(scripted, fake_upstream):
    def divide(a: float, b: float) -> float:
        return a / b

    ai = await scripted("toolerr", {"tool_calls": [{"name": "divide", "arguments": {"a": 1, "b": 0}}]},
                  {"tool_calls": [{"name": "missing", "arguments": {}}]}, '{"result": "undefined"}')
    helper = agent("question -> result", name="divider", description=DESCRIPTION,
                   functions=[{"name": "divide", "description": "a / b", "func": divide,
                               "parameters": {"type": "object", "properties": {}}}])
    assert await helper.forward(ai, {"question": "1/0"}) == {"result": "undefined"}
    bodies = sent(fake_upstream, "toolerr")
    assert bodies[1]["messages"][-1]["content"] == "Error: ZeroDivisionError: division by zero"
    assert bodies[2]["messages"][-1]["content"].startswith("Error: there is no function named 'missing'")


async def test_a_child_agent_is_a_tool_of_its_parent_with_its_own_tools(scripted, fake_upstream):
    lookups = []
    child = agent("topic:string -> facts:string[]", name="researcher", description="Finds facts about a topic",
                  functions=[Tool(name="lookup", description="Looks a topic up", func=lambda topic: lookups.append(topic)
                                  or f"{topic} is a city")])
    parent = agent("question -> answer", name="writer", description="Writes answers from researched facts",
                   agents=[child])
    ai = await scripted("family",
                  {"tool_calls": [{"name": "researcher", "arguments": {"topic": "Paris"}}]},   # parent
                  {"tool_calls": [{"name": "lookup", "arguments": {"topic": "Paris"}}]},       # child
                  '{"facts": ["Paris is a city"]}',                                            # child
                  '{"answer": "Paris is a city."}')                                            # parent
    assert await parent.forward(ai, {"question": "What is Paris?"}) == {"answer": "Paris is a city."}
    assert lookups == ["Paris"]
    bodies = sent(fake_upstream, "family")
    assert [t["function"]["name"] for t in bodies[0]["tools"]] == ["researcher"]
    assert bodies[0]["tools"][0]["function"]["parameters"]["required"] == ["topic"]
    assert [t["function"]["name"] for t in bodies[1]["tools"]] == ["lookup"]
    assert bodies[3]["messages"][-1]["content"] == '{"facts": ["Paris is a city"]}'


async def test_an_answer_that_does_not_fit_gets_one_repair_message_naming_its_errors(scripted, fake_upstream):
    ai = await scripted("repair", '{"answer": "four", "n": "four"}', '{"answer": "four", "n": 4}')
    helper = agent("question -> answer, n:number", name="counter", description=DESCRIPTION)
    assert await helper.forward(ai, {"question": "2+2"}, max_retries=1) == {"answer": "four", "n": 4}
    repair = sent(fake_upstream, "repair")[1]["messages"]
    assert repair[-2] == {"role": "assistant", "content": '{"answer": "four", "n": "four"}'}
    assert "n must be a number, got 'four'" in repair[-1]["content"]


async def test_an_answer_that_never_fits_raises_one_typed_error_after_the_retry(scripted):
    ai = await scripted("neverfits", '{"answer": "x"}')
    helper = agent("question -> answer, n:number", name="counter", description=DESCRIPTION)
    with pytest.raises(AgentOutputError) as caught:
        await helper.forward(ai, {"question": "2+2"}, max_retries=1)
    assert caught.value.errors == ["n is missing"] and caught.value.raw == '{"answer": "x"}'


async def test_an_agent_that_only_calls_tools_stops_at_max_steps(scripted):
    ai = await scripted("loop", {"tool_calls": [{"name": "noop", "arguments": {}}]})
    helper = agent("q -> a", name="looper", description=DESCRIPTION, max_steps=3,
                   functions=[Tool(name="noop", description="does nothing", func=lambda: "ok")])
    with pytest.raises(AgentStepsExceeded, match="max_steps=3"):
        await helper.forward(ai, {"q": "go"})


async def test_per_call_options_override_the_constructors(scripted, fake_upstream):
    ai = await scripted("options", '{"a": "ok"}')
    helper = agent("q -> a", name="tuned", description=DESCRIPTION, temperature=0.2, max_tokens=50)
    await helper.forward(ai, {"q": "x"}, temperature=0.9)
    body = sent(fake_upstream, "options")[0]
    assert (body["temperature"], body["max_tokens"]) == (0.9, 50)


async def test_with_native_tools_off_the_prompt_protocol_carries_the_calls(fake_upstream):
    helper = agent("question -> answer:number", name="calculator", description=DESCRIPTION,
                   functions=[Tool(name="add", description="a + b", func=lambda a, b: a + b,
                                   parameters={"type": "object", "properties": {"a": {}, "b": {}}})])
    url = fake_upstream.script("protocol", 'Function Call: {"name": "add", "arguments": {"a": 2, "b": 3}}',
                               "Answer: 5")
    ai = HttpAI("fake", base_url=url)
    assert await helper.forward(ai, {"question": "2+3"}, native_tools=False) == {"answer": 5}
    first, second = sent(fake_upstream, "protocol")
    assert "tools" not in first and "response_format" not in first
    assert "Function Call:" in first["messages"][0]["content"]
    assert second["messages"][-1] == {"role": "user", "content": "Function Result (add): 5"}


async def test_a_block_that_refuses_tools_is_retried_with_the_prompt_protocol():
    class RefusesTools:
        model = "m"

        def __init__(self):
            self.bodies = []

        async def chat(self, messages, *, abort=None, **options):
            self.bodies.append(options)
            if "tools" in options:
                raise AIError("the built-in model does not support tools", status=400, code="unsupported_parameter")
            if len(self.bodies) == 2:
                return ChatResult(content='Function Call: {"name": "now", "arguments": {}}')
            return ChatResult(content="Answer: noon")

        def stream(self, messages, **options):
            raise NotImplementedError

    ai = RefusesTools()
    helper = agent("q -> answer", name="clocker", description=DESCRIPTION,
                   functions=[Tool(name="now", description="the time", func=lambda: "12:00")])
    assert await helper.forward(ai, {"q": "time?"}) == {"answer": "noon"}
    assert ["tools" in b for b in ai.bodies] == [True, False, False]


async def test_streaming_forward_yields_partial_outputs_as_they_arrive(scripted):
    ai = await scripted("stream1", '{"answer": "Paris is the capital", "n": 1}')
    helper = agent("question -> answer, n:number", name="streamer", description=DESCRIPTION)
    pieces = [piece async for piece in helper.streaming_forward(ai, {"question": "capital?"})]
    grown = [p.values["answer"] for p in pieces if not p.done and "answer" in p.delta]
    assert len(grown) > 3 and grown[-1] == "Paris is the capital"
    assert "".join(p.delta["answer"] for p in pieces if "answer" in p.delta) == "Paris is the capital"
    assert pieces[-1].done and pieces[-1].values == {"answer": "Paris is the capital", "n": 1}


async def test_streamed_pieces_of_an_answer_that_was_repaired_say_which_attempt_they_belong_to(scripted):
    ai = await scripted("stream2", '{"answer": "wrong", "n": "x"}', '{"answer": "right", "n": 2}')
    helper = agent("question -> answer, n:number", name="streamer", description=DESCRIPTION)
    pieces = [piece async for piece in helper.streaming_forward(ai, {"question": "q"})]
    assert {p.values.get("answer") for p in pieces if p.attempt == 0} >= {"wrong"}
    assert pieces[-1].attempt == 1 and pieces[-1].values == {"answer": "right", "n": 2}


async def test_stop_from_another_thread_closes_the_stream_and_raises_aborted(scripted, fake_upstream):
    long = json.dumps({"answer": "word " * 200})
    ai = await scripted("stopme", long, scenario="delay20")
    helper = agent("question -> answer", name="talker", description=DESCRIPTION)
    aborted_before = fake_upstream.stats.streams_aborted
    pieces = []
    with pytest.raises(AgentAborted, match="stopped by the test"):
        async for piece in helper.streaming_forward(ai, {"question": "talk"}):
            pieces.append(piece)
            if len(pieces) == 3:
                threading.Thread(target=helper.stop, args=("stopped by the test",)).start()
    assert 3 <= len(pieces) < 20
    for _ in range(50):
        if fake_upstream.stats.streams_aborted > aborted_before:
            break
        await asyncio.sleep(0.02)
    assert fake_upstream.stats.streams_aborted == aborted_before + 1


async def test_stop_reaches_a_child_agents_call_in_flight(scripted, fake_upstream):
    child = agent("topic -> facts", name="slowpoke", description="Takes its time to find facts", stream=True)
    parent = agent("question -> answer", name="boss1", description="Asks its child agent for facts",
                   agents=[child])
    ai = await scripted("stopchild", {"tool_calls": [{"name": "slowpoke", "arguments": {"topic": "x"}}]},
                  json.dumps({"facts": "fact " * 300}), scenario="delay20")
    run = asyncio.ensure_future(parent.forward(ai, {"question": "q"}, stream=True))
    for _ in range(500):  # until the child's call reached the model
        if len(sent(fake_upstream, "stopchild")) >= 2:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)
    parent.stop()
    with pytest.raises(AgentAborted):
        await run
    assert not parent._active and not child._active


async def test_an_agent_refuses_unknown_input_fields_and_missing_ones(scripted):
    helper = agent(f().input("question", f.string()).output("answer", f.string()).build(), name="asker",
                   description=DESCRIPTION, ai=await scripted("inputs", '{"answer": "x"}'))
    with pytest.raises(AgentConfigError, match="unknown input fields: other"):
        await helper.forward(values={"question": "q", "other": 1})
    with pytest.raises(AgentConfigError, match="question is missing"):
        await helper.forward(values={})
    assert await helper.forward(values={"question": "q"}) == {"answer": "x"}


async def test_an_agent_over_http_reaches_a_gateway_refusal_as_an_ai_error(fake_upstream):
    helper = agent("q -> a", name="refused", description=DESCRIPTION)
    with pytest.raises(AIError) as caught:
        await helper.forward(HttpAI("fake", base_url=fake_upstream.base_url("status429")), {"q": "x"})
    assert caught.value.status == 429


def test_forward_sync_in_a_thread_is_stopped_from_another_thread(fake_upstream):
    url = fake_upstream.script("syncstop", json.dumps({"a": "word " * 300}), scenario="delay20")
    helper = agent("q -> a", name="syncer", description=DESCRIPTION)
    outcome: list[BaseException | dict] = []

    def run() -> None:
        try:
            outcome.append(helper.forward_sync(HttpAI("fake", base_url=url), {"q": "talk"}, stream=True))
        except BaseException as exc:  # noqa: BLE001 (the test reads what ended the thread)
            outcome.append(exc)

    thread = threading.Thread(target=run)
    started = fake_upstream.stats.streams_started
    thread.start()
    for _ in range(500):
        if fake_upstream.stats.streams_started > started:
            break
        threading.Event().wait(0.01)
    helper.stop("enough")
    thread.join(10)
    assert isinstance(outcome[0], AgentAborted) and outcome[0].reason == "enough"


async def test_an_agent_on_model_auto_runs_on_the_block_the_planner_routes_to(org, upstream_block, fake_upstream):
    url = fake_upstream.script("auto", '{"answer": "routed"}')

    def routed_to_default() -> None:
        block = upstream_block(org, block_id="agent-auto", config={"base_url": url})
        planner_config_update(organization=org, values={"mode": PlannerConfig.TAGS, "default_block": block},
                              partial=True)

    await asyncio.to_thread(routed_to_default)
    helper = agent("question -> answer", name="autorouted", description=DESCRIPTION)
    assert await helper.forward(GatewayAI("auto", organization=org), {"question": "anything"}) == {"answer": "routed"}
    assert sent(fake_upstream, "auto")[0]["model"] == "agent-auto"
