"""Agent runs whose executor died: a worker crash, a hard time limit or a restart leaves a run `running`
with a lease nobody renews (the state these tests set up by hand). The sweeper fails such a run and its
feed ends; a stop finishes it at once; a late executor never overwrites that. And a tool result or an
answer with NUL characters, which PostgreSQL cannot store, does not break the run: they are stripped."""

from __future__ import annotations

import asyncio
import json
import threading
from datetime import timedelta

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from inference.agents import services
from inference.agents.models import AgentDefinition, AgentRun, AgentRunEvent
from inference.workflows.services import sweep_all
from tests.agents.conftest import wait_for
from tests.workflows.live_client import EventStream

pytestmark = pytest.mark.django_db(transaction=True)

DESCRIPTION = "Answers questions about cities using its tools"


def scripted_brain(org, upstream_block, fake_upstream, *replies, scenario: str = "", block_id: str = "guide-brain"):
    return upstream_block(org, block_id=block_id, config={
        "base_url": fake_upstream.script(block_id.replace("-", ""), *replies, scenario=scenario)})


def cityguide(party, **fields):
    response = party.client().post("/api/agents", {
        "name": "cityguide", "description": DESCRIPTION, "signature": "question:string -> answer:string",
        "model": "guide-brain", **fields}, format="json")
    assert response.status_code == 201, response.json()
    return AgentDefinition.objects.get(organization=party.organization, name="cityguide")


def start(party) -> str:
    response = party.client().post("/api/agents/cityguide/runs", {"input": {"question": "Paris?"}}, format="json")
    assert response.status_code == 201, response.json()
    return response.json()["data"]["id"]


def wait_run(run_id: str) -> AgentRun:
    return wait_for(lambda: AgentRun.objects.filter(pk=run_id, state__in=AgentRun.FINISHED).first(), 15,
                    what=f"run {run_id} to finish")


def orphaned_run(party, *, lease_s: float) -> AgentRun:
    """A run as a killed worker leaves it: running, its run.started written, its lease ending in `lease_s`
    seconds (negative: lapsed already)."""
    agent = AgentDefinition.objects.create(organization=party.organization, name="cityguide", description=DESCRIPTION,
                                           signature="question:string -> answer:string", model="guide-brain")
    now = timezone.now()
    run = AgentRun.objects.create(organization=party.organization, agent=agent, model="guide-brain",
                                  input={"question": "Paris?"}, state=AgentRun.RUNNING, created_by=party.user,
                                  started_at=now - timedelta(seconds=60), lease_until=now + timedelta(seconds=lease_s))
    AgentRunEvent.objects.create(run=run, seq=1, kind="run.started", data={"agent": "cityguide", "model": "guide-brain"})
    return run


def kinds(run_id) -> list[str]:
    return list(AgentRunEvent.objects.filter(run_id=run_id).order_by("seq").values_list("kind", flat=True))


async def feed(run_id, key: str) -> list[dict]:
    stream = EventStream(run_id, key, feed="agent-runs")
    assert await stream.open() == 200
    events = await stream.events(until="end")
    await stream.close()
    return events


async def test_the_sweeper_fails_a_run_whose_worker_vanished_and_its_feed_ends(owner, member):
    dead = await asyncio.to_thread(orphaned_run, owner, lease_s=-1)
    live = await asyncio.to_thread(AgentRun.objects.create, organization=owner.organization, agent=dead.agent,
                                   model="guide-brain", state=AgentRun.RUNNING, started_at=timezone.now(),
                                   lease_until=timezone.now() + timedelta(seconds=30))
    assert (await asyncio.to_thread(sweep_all))["agent_runs_failed"] == 1
    run = await asyncio.to_thread(AgentRun.objects.get, pk=dead.pk)
    assert (run.state, run.error) == ("failed", services.LEASE_LAPSED) and run.lease_until is None
    assert run.finished_at is not None
    assert (await asyncio.to_thread(AgentRun.objects.get, pk=live.pk)).state == "running"  # its lease holds
    events = await feed(dead.pk, member.key)
    assert [e["event"] for e in events] == ["run.started", "run.finished", "end"]
    assert events[1]["data"]["state"] == "failed" and "lease" in events[1]["data"]["error"]
    assert (await asyncio.to_thread(sweep_all))["agent_runs_failed"] == 0  # once only


def test_the_sweeper_command_fails_a_run_claimed_before_runs_had_leases(owner, capsys):
    # No lease at all (claimed by the code before leases), older than the hard task time limit: dead.
    run = orphaned_run(owner, lease_s=0)
    AgentRun.objects.filter(pk=run.pk).update(
        lease_until=None, started_at=timezone.now() - timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT + 1))
    call_command("workflows_sweeper", "--once")
    assert "agent_runs_failed=1" in capsys.readouterr().out
    assert AgentRun.objects.get(pk=run.pk).state == "failed"


async def test_the_feed_of_a_dead_run_ends_even_where_no_sweeper_runs(owner, member):
    dead = await asyncio.to_thread(orphaned_run, owner, lease_s=-1)
    events = await feed(dead.pk, member.key)
    assert [e["event"] for e in events] == ["run.started", "run.finished", "end"]
    assert (await asyncio.to_thread(AgentRun.objects.get, pk=dead.pk)).state == "failed"


def test_stopping_a_run_whose_worker_vanished_finishes_it_at_once(owner):
    run = orphaned_run(owner, lease_s=-1)
    AgentRunEvent.objects.create(run=run, seq=2, kind="step", data={"step": 1})
    response = owner.client().post(f"/api/agent-runs/{run.pk}/stop")
    assert response.status_code == 200, response.json()
    data = response.json()["data"]
    assert data["state"] == "stopped" and "lease" in data["error"] and data["steps"] == 1
    assert kinds(run.pk) == ["run.started", "step", "run.finished"]
    assert owner.client().post(f"/api/agent-runs/{run.pk}/stop").status_code == 409
    assert services.agent_runs_sweep()["agent_runs_failed"] == 0


def test_stopping_a_run_whose_lease_holds_asks_its_executor(owner):
    run = orphaned_run(owner, lease_s=30)
    response = owner.client().post(f"/api/agent-runs/{run.pk}/stop")
    assert response.status_code == 200 and response.json()["data"]["stopRequested"]
    assert AgentRun.objects.get(pk=run.pk).state == "running"  # its executor sees the flag at its next poll


def test_a_live_run_renews_its_lease_and_an_executor_that_lost_it_leaves_the_sweepers_failure(
        owner, upstream_block, fake_upstream, settings):
    settings.WORKFLOW_HEARTBEAT_S = 0.2
    scripted_brain(owner.organization, upstream_block, fake_upstream, json.dumps({"answer": "word " * 400}),
                   scenario="delay20")
    agent = cityguide(owner)
    run_id = str(AgentRun.objects.create(organization=owner.organization, agent=agent, model="guide-brain",
                                         input={"question": "Paris?"}, created_by=owner.user).pk)
    aborted = fake_upstream.stats.streams_aborted
    ended: list[str] = []

    def executor() -> None:  # the executor's own job, on a thread of the test's so it can wait for its end
        try:
            ended.append(services.agent_run_execute(run_id=run_id))
        finally:
            connection.close()

    worker = threading.Thread(target=executor)
    worker.start()
    wait_for(lambda: AgentRunEvent.objects.filter(run_id=run_id, kind="delta").exists(), 15, what="a delta")
    first = AgentRun.objects.get(pk=run_id).lease_until
    wait_for(lambda: AgentRun.objects.get(pk=run_id).lease_until > first, 5, what="the lease to be renewed")
    # As if its executor had stalled past its lease: the sweeper, at a time past the lease, fails the run.
    later = timezone.now() + timedelta(seconds=settings.WORKFLOW_LEASE_S + 5)
    assert services.agent_runs_sweep(now=later)["agent_runs_failed"] == 1
    # The executor's next renewal fails: it closes its model call and leaves the sweeper's verdict alone.
    worker.join(15)
    assert ended == ["failed"]
    wait_for(lambda: fake_upstream.stats.streams_aborted > aborted, 5, what="the upstream stream to close")
    run = AgentRun.objects.get(pk=run_id)
    assert (run.state, run.error) == ("failed", services.LEASE_LAPSED)
    assert kinds(run_id).count("run.finished") == 1 and kinds(run_id)[-1] == "run.finished"


def test_a_tool_result_and_an_answer_with_nul_characters_are_recorded_without_them(owner, upstream_block,
                                                                                   fake_upstream):
    scripted_brain(owner.organization, upstream_block, fake_upstream,
                   {"tool_calls": [{"name": "facts", "arguments": {"prompt": "Paris"}}]},
                   '{"answer": "big\\u0000 city"}')
    upstream_block(owner.organization, block_id="facts",
                   config={"base_url": fake_upstream.script("facts", "a body\x00with NUL")})
    cityguide(owner, tools=[{"type": "block", "block": "facts"}])
    run = wait_run(start(owner))
    assert (run.state, run.error, run.output) == ("succeeded", "", {"answer": "big city"})
    assert run.events.get(kind="tool_result").data["result"] == "a bodywith NUL"
    finished = owner.client().get(f"/api/agent-runs/{run.pk}").json()["data"]["events"][-1]
    assert finished["type"] == "run.finished" and finished["output"] == {"answer": "big city"}
