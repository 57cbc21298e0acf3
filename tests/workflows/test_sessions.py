"""Block nodes that keep a conversation in the context window store, as a chat request naming a
session_id does."""

from __future__ import annotations

import pytest

from inference.context_window.selectors import history_of
from inference.workflows.models import WorkflowRun
from tests.workflows.conftest import nodes, publish, start, wait_run

pytestmark = pytest.mark.django_db(transaction=True)

DOCUMENT = {"name": "remember", "version": "1", "inputs": {"ticket": {"type": "string"}, "text": {"type": "string"}},
            "nodes": [{"id": "say", "type": "block", "block": "reverse", "session": "ticket-{{ input.ticket }}",
                       "prompt": "{{ input.text }}"}]}


def test_a_block_node_naming_a_session_reads_and_appends_it_run_after_run(owner, reverse_block):
    reverse_block(owner.organization)
    workflow_id = publish(owner, DOCUMENT)
    for text in ("abc", "xyz"):
        run = wait_run(start(owner, workflow_id, {"ticket": "42", "text": text}))
        assert run.state == WorkflowRun.SUCCEEDED, run.error
    assert nodes(run.pk)["say"].input["session"] == "ticket-42"
    history = history_of(organization=owner.organization, session_id="ticket-42")
    assert [(m["role"], m["content"]) for m in history] == [
        ("user", "abc"), ("assistant", "cba"), ("user", "xyz"), ("assistant", "zyx")]


def test_a_session_must_be_a_template_string_and_only_on_single_calls(owner, reverse_block):
    reverse_block(owner.organization)
    bad = {**DOCUMENT, "nodes": [
        {**DOCUMENT["nodes"][0], "session": 7},
        {"id": "each", "type": "map", "block": "reverse", "over": "{{ input.text }}", "prompt": "{{ item }}",
         "session": "s"},
        {"id": "other", "type": "block", "block": "reverse", "prompt": "x", "session": "{{ input.nope }}"}]}
    response = owner.client().post("/api/workflows", bad, format="json")
    assert response.status_code == 422  # a document, but not a valid workflow
    errors = "\n".join(response.json()["errors"])
    assert "'say'.session: a string template" in errors
    assert "node 'each'" in errors and "session" in errors
    assert "input.nope" in errors


def test_a_session_id_the_gateway_refuses_fails_the_node_with_its_reason(owner, reverse_block):
    reverse_block(owner.organization)
    run = wait_run(start(owner, publish(owner, DOCUMENT), {"ticket": "not allowed", "text": "abc"}))
    assert run.state == WorkflowRun.FAILED
    assert "answered 400" in run.error and "session_id" in run.error
