"""An agent as a workflow node: its input rendered from the run's context, its output the node's output."""

from __future__ import annotations

import pytest

from inference.workflows.models import NodeRun
from tests.workflows.conftest import nodes, publish, start, wait_run

pytestmark = pytest.mark.django_db(transaction=True)


def document(agent: str = "cityguide") -> dict:
    return {"name": "guided", "version": "1", "inputs": {"city": {"type": "string"}}, "nodes": [
        {"id": "guide", "type": "agent", "agent": agent, "input": {"question": "Tell me about {{ input.city }}"}}],
        "output": "{{ nodes.guide.output.answer }}"}


@pytest.fixture
def cityguide(owner, upstream_block, fake_upstream):
    upstream_block(owner.organization, block_id="guide-brain",
                   config={"base_url": fake_upstream.script("wfguide", '{"answer": "Paris is big"}')})
    response = owner.client().post("/api/agents", {
        "name": "cityguide", "description": "Answers questions about cities", "model": "guide-brain",
        "signature": "question:string -> answer:string"}, format="json")
    assert response.status_code == 201, response.json()


def test_an_agent_node_runs_the_stored_agent_with_its_rendered_input(owner, cityguide, fake_upstream):
    run = wait_run(start(owner, publish(owner, document()), {"city": "Paris"}))
    assert run.state == "succeeded", run.error
    node = nodes(run.pk)["guide"]
    assert (node.state, node.output) == (NodeRun.SUCCEEDED, {"answer": "Paris is big"})
    assert node.input["input"] == {"question": "Tell me about Paris"}
    assert fake_upstream.stats.scripted_bodies["wfguide"][-1]["messages"][1]["content"] == \
        "Question: Tell me about Paris"


def test_a_workflow_naming_an_agent_the_organization_lacks_is_a_422(owner, outsider, cityguide):
    response = outsider.client().post("/api/workflows", document(), format="json")
    assert response.status_code == 422
    assert "no agent 'cityguide' in this organization" in response.json()["message"]
    bad = owner.client().post("/api/workflows", {**document(), "nodes": [{"id": "guide", "type": "agent"}]},
                              format="json")
    assert bad.status_code == 422 and "agent: required" in bad.json()["message"]
