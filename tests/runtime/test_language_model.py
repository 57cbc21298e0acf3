"""The language model component's `infer` reaches the block as the caller wrote it: `tools` (from the
call or, as defaults, from the component's attributes) and a trailing assistant message, the prefill the
model continues, arrive at the upstream; a tool call comes back with finish_reason `tool_calls`."""

from __future__ import annotations

import json

import pytest

from tests.runtime.conftest import open_socket, post

pytestmark = pytest.mark.django_db(transaction=True)

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
PREFILL = [{"role": "system", "content": "You call tools when you need facts."},
           {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"}]},
           {"role": "assistant", "content": [{"type": "text", "text": "Let me "}, {"type": "text", "text": "check"}]}]
CALL = {"tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}]}


@pytest.fixture
def scripted_lm(owner, upstream_block, fake_upstream):
    """The `acme-tools` block of `owner`'s organization, answering once with a call of get_weather."""
    upstream_block(owner.organization, block_id="acme-tools", config={"base_url": fake_upstream.script("lm", CALL)})
    return lambda: fake_upstream.stats.scripted_bodies.get("lm", [])


async def _infer(owner, attrs: dict, inputs: dict) -> list[dict]:
    socket = await open_socket(owner.key)
    try:
        defined = await socket.ask("d", type="define_component", component_type="language_model",
                                   component_name="lm0", attrs={"model": "acme-tools", **attrs})
        assert defined[-1]["status"] == "ok", defined
        return await socket.ask("i", type="call_method", component_name="lm0", method="infer", input=inputs)
    finally:
        await socket.close()


async def test_tools_and_a_trailing_assistant_prefill_reach_the_block_and_a_tool_call_comes_back(owner,
                                                                                                 scripted_lm):
    packets = await _infer(owner, {}, {"messages": PREFILL, "tools": [WEATHER], "tool_choice": "auto"})
    (sent,) = scripted_lm()
    assert sent["tools"] == [WEATHER] and sent["tool_choice"] == "auto"
    # The prefill is the last message, an assistant turn, its text parts joined: the model continues it.
    assert sent["messages"][-1] == {"role": "assistant", "content": "Let me check"}
    assert [m["role"] for m in sent["messages"]] == ["system", "user", "assistant"]
    assert all(p["status"] == "ok" for p in packets) and packets[-1]["finish"]
    calls = [c for p in packets for c in p["body"]["message"].get("tool_calls") or []]
    assert [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in calls] == [
        ("get_weather", {"city": "Paris"})]
    assert [p["body"]["finish_reason"] for p in packets][-1] == "tool_calls"
    assert all(p["body"]["finish_reason"] is None for p in packets[:-1])


async def test_tools_given_when_the_component_is_defined_are_sent_with_every_infer(owner, scripted_lm):
    packets = await _infer(owner, {"tools": [WEATHER], "temperature": 0},
                           {"messages": [{"role": "user", "content": "Weather in Paris?"}]})
    (sent,) = scripted_lm()
    assert sent["tools"] == [WEATHER] and sent["temperature"] == 0
    assert packets[-1]["body"]["finish_reason"] == "tool_calls"


async def test_a_single_http_call_passes_the_tools_and_prefill_too(owner, scripted_lm):
    status, body = await post(owner.key, {"type": "define_component", "component_type": "language_model",
                                          "component_name": "lm1", "attrs": {"model": "acme-tools"}})
    assert status == 200, body
    status, body = await post(owner.key, {"type": "call_method", "component_name": "lm1", "method": "infer",
                                          "input": {"messages": PREFILL, "tools": [WEATHER]}})
    assert status == 200, body
    (sent,) = scripted_lm()
    assert sent["tools"] == [WEATHER] and sent["messages"][-1] == {"role": "assistant", "content": "Let me check"}
    assert body["packets"][-1]["finish_reason"] == "tool_calls"
    assert [c["function"]["name"] for p in body["packets"] for c in p["message"].get("tool_calls") or []] == [
        "get_weather"]
