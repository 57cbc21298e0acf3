"""Agents as platform objects: definitions per organization, runs recorded with their steps, tool calls and
token usage, the live feed (SSE and WebSocket), stop, and the tenancy rules (another organization's agents
and runs are 404, a member may not define agents nor stop another's run)."""

from __future__ import annotations

import asyncio
import json

import pytest

from inference.agents.models import AgentDefinition, AgentRun
from tests.agents.conftest import wait_for
from tests.workflows.live_client import EventStream, run_socket, socket_frames

pytestmark = pytest.mark.django_db(transaction=True)

DESCRIPTION = "Answers questions about cities using its tools"


def definition(**fields) -> dict:
    return {"name": "cityguide", "description": DESCRIPTION, "signature": "question:string -> answer:string",
            "model": "guide-brain", **fields}


def create(party, **fields):
    return party.client().post("/api/agents", definition(**fields), format="json")


def start(party, name: str = "cityguide", **body):
    return party.client().post(f"/api/agents/{name}/runs", {"input": {"question": "Paris?"}, **body}, format="json")


def wait_run(run_id: str, states=AgentRun.FINISHED) -> AgentRun:
    return wait_for(lambda: AgentRun.objects.filter(pk=run_id, state__in=states).first(), 15,
                    what=f"run {run_id} to reach {states}")


def test_an_owner_creates_an_agent_and_members_read_it(owner, member, brain):
    brain('{"answer": "x"}')
    response = create(owner, options={"temperature": 0.1, "max_steps": 5})
    assert response.status_code == 201, response.json()
    assert response.json()["data"]["options"] == {"temperature": 0.1, "max_steps": 5}
    assert [a["name"] for a in member.client().get("/api/agents").json()["data"]] == ["cityguide"]
    assert member.client().get("/api/agents/cityguide").json()["data"]["model"] == "guide-brain"
    assert create(owner).status_code == 409


def test_a_member_may_not_create_change_or_delete_an_agent(owner, member, brain):
    brain('{"answer": "x"}')
    assert create(member).status_code == 403
    assert create(owner).status_code == 201
    assert member.client().put("/api/agents/cityguide", {k: v for k, v in definition().items() if k != "name"},
                               format="json").status_code == 403
    assert member.client().delete("/api/agents/cityguide").status_code == 403
    assert AgentDefinition.objects.filter(name="cityguide").exists()


def test_another_organizations_agent_is_404_for_reading_running_and_deleting(owner, outsider, brain):
    brain('{"answer": "x"}')
    assert create(owner).status_code == 201
    assert outsider.client().get("/api/agents/cityguide").status_code == 404
    assert start(outsider).status_code == 404
    assert outsider.client().delete("/api/agents/cityguide").status_code == 404
    assert outsider.client().put("/api/agents/cityguide", {k: v for k, v in definition().items() if k != "name"},
                                 format="json").status_code == 404
    assert outsider.client().get("/api/agents/cityguide/runs").status_code == 404
    assert outsider.client().get("/api/agents").json()["data"] == []


def test_a_bad_signature_is_a_422_naming_the_position(owner, brain):
    brain('{"answer": "x"}')
    response = create(owner, signature="question:strng -> answer")
    assert response.status_code == 422
    assert "unknown type 'strng'" in response.json()["message"] and "position 9" in response.json()["message"]


def test_a_short_description_is_a_400_and_an_unknown_option_too(owner, brain):
    brain('{"answer": "x"}')
    assert create(owner, description="short").status_code == 400
    assert create(owner, options={"max_steps": 5, "shell": True}).status_code == 400


def test_a_model_or_tool_the_organization_cannot_use_is_a_404(owner, outsider, upstream_block, brain):
    brain('{"answer": "x"}')
    upstream_block(outsider.organization, block_id="globex-secret")
    assert create(owner, model="globex/globex-secret").status_code == 404
    assert create(owner, tools=[{"type": "block", "block": "globex/globex-secret"}]).status_code == 404
    assert create(owner, tools=[{"type": "agent", "agent": "nobody"}]).status_code == 404
    assert create(owner, tools=[{"type": "agent", "agent": "cityguide"}]).status_code == 422


def test_a_run_is_recorded_with_its_steps_tool_calls_usage_and_cost(owner, member, brain, upstream_block,
                                                                    fake_upstream):
    brain({"tool_calls": [{"name": "facts", "arguments": {"prompt": "Paris"}}]},
          {"tool_calls": [{"name": "historian", "arguments": {"topic": "Paris"}}]},
          '{"summary": "old"}',
          '{"answer": "Paris is old and big"}')
    upstream_block(owner.organization, block_id="facts", config={"base_url": fake_upstream.script("facts", "big")})
    assert owner.client().post("/api/agents", {"name": "historian", "description": "Knows the history of cities",
                                               "signature": "topic -> summary", "model": "guide-brain"},
                               format="json").status_code == 201
    assert create(owner, tools=[{"type": "block", "block": "facts"},
                                {"type": "agent", "agent": "historian"}]).status_code == 201
    response = start(member)
    assert response.status_code == 201, response.json()
    run = wait_run(response.json()["data"]["id"])
    assert (run.state, run.output, run.error) == ("succeeded", {"answer": "Paris is old and big"}, "")
    assert (run.steps, run.tool_calls) == (3, 2)
    # Three calls of the parent, one of the child and one of the block tool, each 8 prompt tokens (the fake's count).
    assert run.usage["calls"] == 5 and run.usage["prompt_tokens"] == 40
    assert run.cost_tokens == run.usage["total_tokens"] == 40 + run.usage["completion_tokens"]
    data = member.client().get(f"/api/agent-runs/{run.pk}").json()["data"]
    kinds = [e["type"] for e in data["events"]]
    assert kinds == ["run.started", "step", "tool_call", "tool_result", "step", "tool_call", "tool_result", "step",
                     "run.finished"]
    assert data["events"][3]["result"] == "big" and data["events"][6]["result"] == '{"summary": "old"}'
    assert [r["id"] for r in member.client().get("/api/agents/cityguide/runs").json()["data"]] == [str(run.pk)]


def test_input_that_does_not_fit_the_signature_is_a_422(owner, brain):
    brain('{"answer": "x"}')
    assert create(owner).status_code == 201
    response = owner.client().post("/api/agents/cityguide/runs", {"input": {"city": "Paris"}}, format="json")
    assert response.status_code == 422 and "unknown input fields: city" in response.json()["message"]


def test_a_failing_model_fails_the_run_with_its_message(owner, upstream_block):
    upstream_block(owner.organization, "status500", block_id="guide-brain")
    assert create(owner).status_code == 201
    run = wait_run(start(owner).json()["data"]["id"])
    assert run.state == "failed" and "500" in run.error


def test_stopping_a_run_closes_its_model_stream_and_records_it_stopped(owner, member, brain, fake_upstream):
    brain(json.dumps({"answer": "word " * 400}), scenario="delay20")
    assert create(owner).status_code == 201
    aborted = fake_upstream.stats.streams_aborted
    run_id = start(member).json()["data"]["id"]
    wait_for(lambda: AgentRun.objects.get(pk=run_id).events.filter(kind="delta").exists(), 15, what="a delta")
    response = member.client().post(f"/api/agent-runs/{run_id}/stop")
    assert response.status_code == 200 and response.json()["data"]["stopRequested"]
    run = wait_run(run_id)
    assert (run.state, run.error) == ("stopped", "the run was stopped")
    wait_for(lambda: fake_upstream.stats.streams_aborted > aborted, 5, what="the upstream stream to close")
    assert member.client().post(f"/api/agent-runs/{run_id}/stop").status_code == 409


def test_a_member_may_not_stop_anothers_run_and_another_organization_gets_404(owner, member, outsider, brain):
    brain('{"answer": "x"}', scenario="delay20")
    assert create(owner).status_code == 201
    run_id = start(owner).json()["data"]["id"]
    assert member.client().post(f"/api/agent-runs/{run_id}/stop").status_code == 403
    assert outsider.client().post(f"/api/agent-runs/{run_id}/stop").status_code == 404
    assert outsider.client().get(f"/api/agent-runs/{run_id}").status_code == 404
    assert outsider.client().get(f"/api/agent-runs/{run_id}/events").status_code == 404
    wait_run(run_id)


def _started(owner, brain) -> str:
    brain('{"answer": "Paris is the capital of France"}', scenario="delay5")
    assert create(owner).status_code == 201
    return start(owner).json()["data"]["id"]


async def test_sse_streams_the_runs_steps_and_partial_outputs_to_the_end(owner, member, brain):
    run_id = await asyncio.to_thread(_started, owner, brain)
    stream = EventStream(run_id, member.key, feed="agent-runs")
    assert await stream.open() == 200
    events = await stream.events(until="end")
    kinds = [e["event"] for e in events]
    assert kinds[:2] == ["run.started", "step"] and kinds[-2:] == ["run.finished", "end"]
    deltas = [e["data"] for e in events if e["event"] == "delta"]
    assert deltas and "".join(d["delta"].get("answer", "") for d in deltas) == "Paris is the capital of France"
    assert events[-2]["data"]["output"] == {"answer": "Paris is the capital of France"}
    await stream.close()


async def test_the_websocket_feed_sends_the_events_then_end_and_4404_to_another_organization(owner, outsider,
                                                                                             brain):
    run_id = await asyncio.to_thread(_started, owner, brain)
    socket = run_socket(run_id, owner.key, feed="agent-runs")
    assert (await socket.connect())[0]
    frames = await socket_frames(socket, until="end")
    assert frames[0]["event"] == "run.started" and frames[-2]["event"] == "run.finished"
    await socket.disconnect()
    foreign = run_socket(run_id, outsider.key, feed="agent-runs")
    await foreign.connect()
    assert (await socket_frames(foreign, until="error"))[-1]["status"] == 404
    assert (await foreign.receive_output(5))["code"] == 4404
    await foreign.disconnect()


def test_a_runtime_operator_is_a_tool_and_its_refusal_goes_back_to_the_model(owner, brain, fake_upstream):
    brain({"tool_calls": [{"name": "calculator", "arguments": {"expression": "6*7"}}]},
          {"tool_calls": [{"name": "calculator", "arguments": {"expression": "1/"}}]},
          '{"answer": "42"}')
    assert create(owner, tools=[{"type": "operator", "operator": "teleport"}]).status_code == 400
    assert create(owner, tools=[{"type": "operator", "operator": "calculator"}]).status_code == 201
    run = wait_run(start(owner).json()["data"]["id"])
    assert (run.state, run.output) == ("succeeded", {"answer": "42"})
    first, second = [e.data for e in run.events.filter(kind="tool_result").order_by("seq")]
    assert "42" in first["result"] and not first["error"]
    assert second["error"] and second["result"].startswith("Error: VMFailure")
    tool = fake_upstream.stats.scripted_bodies["guidebrain"][0]["tools"][0]["function"]
    assert tool["name"] == "calculator" and tool["parameters"]["required"] == ["expression"]
