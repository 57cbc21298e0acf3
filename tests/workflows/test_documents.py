"""Upload: the DSL, its validation (every error named at once), versions, and who may publish."""

from __future__ import annotations

import pytest

from inference.workflows import templates
from inference.workflows.models import Workflow, WorkflowVersion
from registry.models import Block
from tests.factories import BlockFactory

pytestmark = pytest.mark.django_db


def simple(block: str = "reverse", version: str = "1") -> dict:
    return {"name": "echo", "version": version, "inputs": {"text": {"type": "string"}},
            "nodes": [{"id": "say", "type": "block", "block": block, "prompt": "{{ input.text }}"}]}


def test_a_valid_document_is_published_as_version_one_and_the_same_document_again_is_that_version(owner, reverse_block):
    reverse_block(owner.organization)
    first = owner.client().post("/api/workflows", simple(), format="json")
    assert first.status_code == 201, first.json()
    assert first.json()["data"]["version"]["number"] == 1
    again = owner.client().post("/api/workflows", simple(), format="json")
    assert again.status_code == 200 and again.json()["data"]["version"]["number"] == 1
    second = owner.client().post("/api/workflows", simple(version="2"), format="json")
    assert second.status_code == 201 and second.json()["data"]["version"]["number"] == 2


def test_a_version_label_reused_for_another_document_is_a_409(owner, reverse_block):
    reverse_block(owner.organization)
    reverse_block(owner.organization, "other")
    assert owner.client().post("/api/workflows", simple(), format="json").status_code == 201
    response = owner.client().post("/api/workflows", simple(block="other"), format="json")
    assert response.status_code == 409 and "already exists" in response.json()["message"]
    assert WorkflowVersion.objects.count() == 1


def test_a_yaml_document_is_read_with_the_safe_loader(owner, reverse_block):
    reverse_block(owner.organization)
    text = ("name: echo\nversion: 1\nnodes:\n  - id: say\n    type: block\n    block: reverse\n"
            "    prompt: 'hello {{ input.text }}'\n")
    response = owner.client().post("/api/workflows", {"document": text}, format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["data"]["version"]["document"]["nodes"][0]["prompt"] == "hello {{ input.text }}"
    tagged = "!!python/object/apply:os.system ['true']"
    refused = owner.client().post("/api/workflows", {"document": tagged}, format="json")
    assert refused.status_code == 400 and "neither JSON nor YAML" in refused.json()["message"]


def test_a_bad_document_names_every_error_at_once(owner, outsider, reverse_block):
    reverse_block(owner.organization)
    BlockFactory(organization=outsider.organization, block_id="secret", visibility=Block.PRIVATE)
    document = {
        "name": "broken", "version": "1", "inputs": {"text": {"type": "string"}},
        "nodes": [
            {"id": "a", "type": "block", "block": "nope", "prompt": "{{ input.missing }}"},
            {"id": "b", "type": "block", "block": "globex/secret", "prompt": "x", "after": ["a"]},
            {"id": "c", "type": "block", "block": "reverse", "prompt": "x", "after": ["d"]},
            {"id": "d", "type": "block", "block": "reverse", "prompt": "x", "after": ["c"]},
            {"id": "e", "type": "block", "block": "reverse", "prompt": "{{ nodes.c.output }}", "after": ["d"]},
            {"id": "f", "type": "teleport"},
            {"id": "g", "type": "planner", "limit": 0},
            {"id": "h", "type": "block", "block": "reverse", "prompt": "{{ nodes.a.output }}",
             "params": {"temperature": "hot", "top_k": 3}},
            {"id": "i", "type": "approval", "approvers": {"users": ["nobody"]}},
        ],
    }
    response = owner.client().post("/api/workflows", document, format="json")
    assert response.status_code == 422  # a document, but not a valid workflow
    errors = response.json()["errors"]
    expected = [
        "node 'a'.block: no block 'nope'",
        "node 'b'.block: no block 'globex/secret'",  # invisible reads exactly like missing
        "cycle: ",
        "node 'e' is unreachable",
        "unknown node type 'teleport'",
        "node 'g': give exactly one of 'prompt' (a template) or 'messages'",
        "node 'g'.limit: an integer from 1 to 50",
        "node 'a'.prompt: '{{ input.missing }}' names an input the document does not declare",
        "node 'h'.prompt: '{{ nodes.a.output }}' names node 'a', which is not upstream",
        "node 'h'.params.temperature: mistyped",
        "node 'h'.params.top_k: unknown parameter",
        "node 'i'.approvers: 'nobody' is not a member",
    ]
    for fragment in expected:
        assert any(fragment in error for error in errors), (fragment, errors)
    assert not Workflow.objects.exists()


def test_an_optimizer_node_names_only_optimizer_blocks(owner, reverse_block):
    reverse_block(owner.organization, "plain")
    reverse_block(owner.organization, "tuner", kind=Block.OPTIMIZER)
    document = {"name": "opt", "version": "1", "nodes": [
        {"id": "o", "type": "optimizer", "block": "plain", "prompt": "x"},
        {"id": "p", "type": "optimizer", "block": "tuner", "prompt": "x"}]}
    errors = owner.client().post("/api/workflows", document, format="json").json()["errors"]
    assert errors == ["node 'o'.block: no optimizer block 'plain' that this organization may use"]


def test_a_key_restricted_to_some_models_cannot_publish_a_workflow_using_others(owner, reverse_block):
    reverse_block(owner.organization)
    reverse_block(owner.organization, "other")
    restricted = owner.client().post("/api/keys", {"name": "narrow", "allowed_models": ["reverse"]}, format="json")
    key = restricted.json()["data"]["key"]
    client = owner.client()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    response = client.post("/api/workflows", simple(block="other"), format="json")
    assert response.status_code == 422
    assert response.json()["errors"] == ["node 'say'.block: this API key is not allowed to use 'other'"]


def test_only_owners_publish_and_other_organizations_see_nothing(owner, member, outsider, reverse_block):
    reverse_block(owner.organization)
    assert member.client().post("/api/workflows", simple(), format="json").status_code == 403
    workflow_id = owner.client().post("/api/workflows", simple(), format="json").json()["data"]["id"]
    assert member.client().get(f"/api/workflows/{workflow_id}").status_code == 200
    assert outsider.client().get(f"/api/workflows/{workflow_id}").status_code == 404
    assert outsider.client().get("/api/workflows").json()["data"] == []
    assert outsider.client().post(f"/api/workflows/{workflow_id}/runs", {}, format="json").status_code == 404


def test_a_version_is_immutable():
    version = WorkflowVersion(pk=1, number=1, label="1", document={})
    with pytest.raises(ValueError, match="immutable"):
        version.save()


def test_templates_substitute_paths_and_nothing_else():
    context = {"input": {"items": [1, 2], "name": "Ada"}, "nodes": {"a": {"output": {"score": 7}}}}
    assert templates.render("{{ input.items }}", context) == [1, 2]
    assert templates.render("Hi {{ input.name }}, {{ nodes.a.output.score }}/{{ input.items.1 }}", context) == "Hi Ada, 7/2"
    with pytest.raises(templates.TemplateError, match="has no '__class__'"):
        templates.render("{{ input.name.__class__ }}", context)
    for bad in ("{{ input.name | upper }}", "{{ input.name() }}", "{{ os.system }}", "{{ input['x'] }}", "{{ input"):
        with pytest.raises(templates.TemplateError):
            templates.references(bad)
