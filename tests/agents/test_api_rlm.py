"""Stored agents in RLM mode (`rlm`, `actor_options`, `responder_options` on POST /api/agents): checked as
agent(..., rlm=) checks them, and their runs read the context fields in the sandbox, on a scripted fake
model (the Actor's code ends with done(), then the Responder answers)."""

from __future__ import annotations

import pytest

from inference.agents.models import AgentDefinition
from tests.agents.test_api import DESCRIPTION, wait_run

pytestmark = pytest.mark.django_db(transaction=True)

SIGNATURE = "document:string, question:string -> answer:string"
DOCUMENT = "The vault code is 4711. " + "Filler text that no prompt should carry. " * 200


def reader(**fields) -> dict:
    return {"name": "vaultreader", "description": DESCRIPTION, "signature": SIGNATURE, "model": "guide-brain",
            "rlm": {"context_fields": ["document"], "max_turns": 3, "max_runtime_chars": 400, "max_llm_calls": 5,
                    "max_batched_llm_query_concurrency": 2},
            "actor_options": {"temperature": 0.1}, "responder_options": {"max_tokens": 64}, **fields}


def create(party, **fields):
    return party.client().post("/api/agents", reader(**fields), format="json")


def test_an_owner_stores_an_rlm_agent_and_members_read_its_rlm_settings(owner, member, brain):
    brain('{"answer": "x"}')
    response = create(owner)
    assert response.status_code == 201, response.json()
    data = member.client().get("/api/agents/vaultreader").json()["data"]
    assert data["rlm"] == reader()["rlm"]
    assert (data["actor_options"], data["responder_options"]) == ({"temperature": 0.1}, {"max_tokens": 64})
    changed = {k: v for k, v in reader(rlm=None, actor_options={}, responder_options={}).items() if k != "name"}
    assert owner.client().put("/api/agents/vaultreader", changed, format="json").status_code == 200
    assert AgentDefinition.objects.get(name="vaultreader").rlm is None


def test_a_member_may_not_create_an_rlm_agent(member, brain):
    brain('{"answer": "x"}')
    assert create(member).status_code == 403
    assert not AgentDefinition.objects.filter(name="vaultreader").exists()


@pytest.mark.parametrize(("fields", "status", "named"), [
    ({"rlm": {"context_fields": ["contents"]}}, 422, "rlm context field 'contents' is not an input field"),
    ({"rlm": {"context_fields": ["document"], "actor_fields": ["score"]}}, 422,
     "rlm actor field 'score' is not an output field"),
    ({"rlm": {"context_fields": ["document"], "actor_fields": ["answer"]}}, 422,
     "rlm actor_fields leave no output for the Responder"),
    ({"rlm": None}, 422, "actor_options and responder_options are for RLM mode"),
    ({"rlm": {"context_fields": ["document"], "max_turns": 0}}, 400, "max_turns: "),
    ({"rlm": {"context_fields": ["document"], "max_llm_calls": 10_000}}, 400, "max_llm_calls: "),
    ({"rlm": {"context_fields": []}}, 400, "context_fields: "),
    ({"rlm": {"contextFields": ["document"]}}, 400, "contextFields: unknown option"),
    ({"actor_options": {"tools": []}}, 400, "tools: unknown option"),
])
def test_a_bad_rlm_setting_is_refused_naming_it_and_nothing_is_stored(owner, brain, fields, status, named):
    brain('{"answer": "x"}')
    response = create(owner, **fields)
    assert response.status_code == status, response.json()
    assert response.json()["success"] is False and named in response.json()["message"]
    assert not AgentDefinition.objects.filter(name="vaultreader").exists()


def test_an_rlm_model_the_organization_cannot_use_is_a_404(owner, outsider, upstream_block, brain):
    brain('{"answer": "x"}')
    upstream_block(outsider.organization, block_id="globex-secret")
    response = create(owner, rlm={"context_fields": ["document"], "sub_model": "globex/globex-secret"})
    assert response.status_code == 404 and "rlm.sub_model" in response.json()["message"]
    response = create(owner, responder_options={"model": "globex/globex-secret"})
    assert response.status_code == 404 and "responder_options.model" in response.json()["message"]


def test_another_organizations_rlm_agent_is_404(owner, outsider, brain):
    brain('{"answer": "x"}')
    assert create(owner).status_code == 201
    assert outsider.client().get("/api/agents/vaultreader").status_code == 404
    response = outsider.client().post("/api/agents/vaultreader/runs",
                                      {"input": {"document": "d", "question": "q"}}, format="json")
    assert response.status_code == 404


@pytest.mark.slow  # the run's Actor code executes in a sandbox subprocess
def test_a_run_of_a_stored_rlm_agent_reads_the_context_in_the_sandbox_and_ends_with_done(owner, member, brain,
                                                                                          fake_upstream):
    brain("```python\nstart = document.index('vault code')\nprint(document[start:start + 19])\ndone()\n```",
          '{"answer": "4711"}')
    assert create(owner).status_code == 201
    response = member.client().post("/api/agents/vaultreader/runs",
                                    {"input": {"document": DOCUMENT, "question": "What is the code?"}},
                                    format="json")
    assert response.status_code == 201, response.json()
    run = wait_run(response.json()["data"]["id"])
    assert (run.state, run.output, run.error) == ("succeeded", {"answer": "4711"}, "")
    turns = [e.data for e in run.events.filter(kind="actor_turn")]
    assert [t["result"] for t in turns] == ["vault code is 4711."]
    assert run.events.get(kind="actor_done").data["ended_by"] == "done"
    assert run.steps == 2 and run.usage["calls"] == 2
    actor, responder = fake_upstream.stats.scripted_bodies["guidebrain"]
    # The document reached neither prompt: the Actor saw its size, the Responder the action log.
    for body in (actor, responder):
        assert "Filler text" not in str(body["messages"])
    assert actor["temperature"] == 0.1 and responder["max_tokens"] == 64
    assert "vault code is 4711." in responder["messages"][-1]["content"]
