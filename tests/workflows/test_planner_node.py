"""The planner node (issue 11, item 1): "pick, then run" with the planner's selector, the same service as
POST /api/planner/select. The planner model is the suite's fake upstream, its replies scripted per test."""

from __future__ import annotations

import pytest

from inference.workflows.models import WorkflowRun
from registry.models import Block
from tests.factories import BlockFactory
from tests.workflows.conftest import nodes, publish, start, wait_run

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def catalogue(owner, outsider, upstream_block):
    upstream_block(owner.organization, "acme-translate", "pick-translate",
                   description="Translates German letters into English.")
    upstream_block(owner.organization, "acme-summarize", "pick-summarize",
                   description="Condenses long news articles into key points.")
    upstream_block(outsider.organization, "globex-secret", "pick-secret")


@pytest.fixture
def chooser(owner, fake_upstream):
    """make(name, *replies) -> a planner block of the owner's organization answering with `replies`."""

    def make(name: str, *replies: str) -> Block:
        return BlockFactory(organization=owner.organization, block_id=name, name=name, backend_type="openai",
                            backend_config={"base_url": fake_upstream.script(name, *replies)}, kind=Block.LLM)

    return make


def picking(**planner) -> dict:
    return {"name": "picked", "version": "1", "inputs": {"text": {"type": "string"}}, "nodes": [
        {"id": "pick", "type": "planner", "task": "Put this into English: {{ input.text }}",
         "prompt": "{{ input.text }}", "params": {"temperature": 0}, **planner},
        {"id": "after", "type": "block", "block": "acme-summarize", "after": ["pick"],
         "prompt": "{{ nodes.pick.output }}"}]}


def test_a_planner_node_picks_a_candidate_then_runs_it_and_records_the_choice(owner, catalogue, chooser,
                                                                           fake_upstream):
    chooser("chooser1", '{"id": "acme-translate", "reason": "German into English"}')
    workflow = publish(owner, picking(planner="chooser1", candidates=["acme-summarize", "acme-translate"]))
    run = wait_run(start(owner, workflow, {"text": "Guten Morgen"}), timeout=90)  # the first ranking loads the embedding model
    assert run.state == WorkflowRun.SUCCEEDED, run.error
    pick = nodes(run.pk)["pick"]
    assert pick.input["block"] == "acme-translate" and pick.input["task"] == "Put this into English: Guten Morgen"
    assert pick.input["selection"]["source"] == "planner" and pick.input["selection"]["reason"] == "German into English"
    assert {c["id"] for c in pick.input["selection"]["candidates"]} == {"acme-summarize", "acme-translate"}
    assert pick.output and fake_upstream.hits["pick-translate"] == 1
    asked = fake_upstream.stats.scripted_bodies["chooser1"][0]["messages"][-1]["content"]
    assert "Guten Morgen" in asked  # the planner saw the rendered task


def test_a_planner_that_answers_nonsense_falls_back_to_the_best_ranked_candidate(owner, catalogue, chooser,
                                                                               fake_upstream):
    chooser("chooser2", "no idea", "still no idea")
    workflow = publish(owner, picking(planner="chooser2", candidates=["acme-translate"]))
    run = wait_run(start(owner, workflow, {"text": "Hallo"}), timeout=90)
    assert run.state == WorkflowRun.SUCCEEDED, run.error
    pick = nodes(run.pk)["pick"]
    assert pick.input["selection"]["source"] == "fallback" and pick.input["block"] == "acme-translate"


def test_a_planner_that_finds_no_fitting_block_fails_the_node_with_its_reason(owner, catalogue, chooser):
    chooser("chooser3", '{"id": "none", "reason": "nothing translates Klingon"}')
    workflow = publish(owner, picking(planner="chooser3", candidates=["acme-translate"]))
    run = wait_run(start(owner, workflow, {"text": "nuqneH"}), timeout=90)
    assert run.state == WorkflowRun.FAILED and "nothing translates Klingon" in run.error
    assert nodes(run.pk)["after"].state == "cancelled"


def test_a_planner_node_names_every_bad_reference_and_field_at_upload(owner, catalogue, chooser):
    document = picking(candidates=["acme-translate", "globex/globex-secret", "nope"], kind="robot", limit=99)
    response = owner.client().post("/api/workflows", document, format="json")
    assert response.status_code == 422
    errors = response.json()["errors"]
    for fragment in ["node 'pick'.kind: llm or optimizer", "node 'pick'.limit: an integer from 1 to 50"]:
        assert any(fragment in error for error in errors), (fragment, errors)
    document = picking(candidates=["acme-translate", "globex/globex-secret", "nope"])
    errors = owner.client().post("/api/workflows", document, format="json").json()["errors"]
    assert errors == [
        "node 'pick'.planner: name the planner block, or configure the organization's plannerBlock "
        "(PUT /api/planner/config)",
        # Another organization's private block reads exactly like a missing one.
        "node 'pick'.candidates: no llm block 'globex/globex-secret' that this organization may use",
        "node 'pick'.candidates: no llm block 'nope' that this organization may use"]


def test_a_key_limited_to_some_models_cannot_name_others_as_candidates(owner, catalogue, chooser):
    chooser("chooser4", '{"id": "acme-translate", "reason": "x"}')
    made = owner.client().post("/api/keys", {"name": "narrow", "allowed_models": ["chooser4", "acme-summarize"]},
                               format="json")
    client = owner.client()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {made.json()['data']['key']}")
    response = client.post("/api/workflows", picking(planner="chooser4", candidates=["acme-translate"]),
                           format="json")
    assert response.status_code == 422
    assert response.json()["errors"] == ["node 'pick'.candidates: this API key is not allowed to use 'acme-translate'"]
