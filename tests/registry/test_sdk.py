"""The seed's Python API (inference.sdk) in-process (ORM) and remote (real HTTP to a live server)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.parse
from pathlib import Path

import pytest
from django.db import connection

from inference.backends.base import LLMInferenceAPI
from inference.sdk import (
    Block,
    BlocksQueryManager,
    KnownLLMOptimizers,
    KnownLLMs,
    RegistryError,
    remote_registry,
)
from registry.models import Block as BlockModel
from tests.factories import BlockFactory

ROOT = Path(__file__).resolve().parents[2]

SEED_BLOCK = {
    "id": "custom-llm-block",
    "blockMetadata": {"description": "Custom summarization model", "tags": ["summary", "text"]},
    "inputProtocols": ["text/plain"],
    "outputProtocol": "text/plain",
}


class ReverseTextLLM(LLMInferenceAPI):
    """The seed's example backend."""

    def run_inference(self, input_data: dict) -> str:
        return input_data.get("text", "")[::-1]

    def check_execute(self, query: dict):
        return True, {"status": "Ready", "query": query}

    def get_current_estimates(self):
        return True, {"estimated_latency": "1ms"}


@pytest.fixture(params=["in-process", "remote"])
def mode(request):
    """Managers for acme (owner) and globex (outsider), built the same way in both modes."""
    if request.param == "remote":
        live_server = request.getfixturevalue("live_server")
        owner = request.getfixturevalue("owner")
        outsider = request.getfixturevalue("outsider")

        def make(cls, party, **kwargs):
            return cls(base_url=live_server.url, api_key=party.key, **kwargs)
    else:
        request.getfixturevalue("db")
        owner = request.getfixturevalue("owner")
        outsider = request.getfixturevalue("outsider")

        def make(cls, party, **kwargs):
            return cls(organization=party.organization.slug, **kwargs)

    return {"make": make, "owner": owner, "outsider": outsider, "name": request.param}


@pytest.fixture
def acme_blocks(mode):
    org = mode["owner"].organization
    BlockFactory(block_id="qa-llm", organization=org, tags=["qa"], description="Answers questions",
                 metadata={"gpus": {"memory": 24}})
    BlockFactory(block_id="sum-llm", organization=org, tags=["summarization"], description="Summarizes research papers",
                 input_protocols=["text/plain", "application/json"])
    BlockFactory(block_id="opt-1", organization=org, kind=BlockModel.OPTIMIZER, tags=["qa"], description="Prompt optimizer")
    BlockFactory(block_id="public-llm", organization=org, tags=["qa"], visibility=BlockModel.PUBLIC)


def test_the_query_manager_round_trips_a_block(mode):
    manager = mode["make"](BlocksQueryManager, mode["owner"])
    created = manager.create_block(SEED_BLOCK)
    assert created.id == "custom-llm-block"
    assert created.outputProtocols == ["text/plain"]
    fetched = manager.get_block("custom-llm-block")
    assert fetched.blockMetadata.description == "Custom summarization model"
    assert fetched.blockMetadata.tags == ["summary", "text"]
    assert fetched.to_dict()["organization"] == "acme"
    found = manager.filter_data([{"variable": "tags", "operator": "IN", "value": ["summary"]},
                                 {"variable": "inputProtocols", "operator": "==", "value": "text/plain"}])
    assert [b.id for b in found] == ["custom-llm-block"]
    with pytest.raises(RegistryError) as conflict:
        manager.create_block(SEED_BLOCK)
    assert conflict.value.status == 409
    manager.delete_block("custom-llm-block")
    with pytest.raises(RegistryError) as missing:
        manager.get_block("custom-llm-block")
    assert (missing.value.status, missing.value.message) == (404, "block not found")


def test_filter_data_nests_and_reports_bad_queries(mode, acme_blocks):
    manager = mode["make"](BlocksQueryManager, mode["owner"])
    group = {"logicalOperator": "OR", "conditions": [
        {"variable": "metadata.gpus.memory", "operator": ">", "value": 16},
        {"variable": "inputProtocols", "operator": "==", "value": "application/json"},
    ]}
    assert sorted(b.id for b in manager.filter_data(group)) == ["qa-llm", "sum-llm"]
    with pytest.raises(RegistryError) as error:
        manager.filter_data([{"variable": "tags", "operator": "SOUNDS LIKE", "value": "qa"}])
    assert error.value.status == 400
    assert "unknown operator 'SOUNDS LIKE'" in error.value.message
    with pytest.raises(RegistryError) as invalid:
        manager.create_block({"id": "x", "kind": "model"})
    assert invalid.value.status == 400 and invalid.value.message.startswith("kind:")


def test_similarity_search_ranks_with_the_builtin_policy(mode, acme_blocks):
    manager = mode["make"](BlocksQueryManager, mode["owner"])
    task = [{"variable": "task_description", "operator": "LIKE", "value": "summarize research paper"}]
    # The stem-overlap policy, named: only the blocks sharing a stem, as before embeddings.
    ranked = manager.similarity_search(task, policy_code_path="text-overlap")
    assert [b.id for b in ranked] == ["sum-llm"]
    assert ranked[0].score > 0
    # The default (cosine), and the seed's own example path, which means the default: every block, best first.
    for path in (None, "policies/similarity_policy.zip"):
        ranked = manager.similarity_search(task, policy_code_path=path)
        assert ranked[0].id == "sum-llm"
        assert ranked[0].parts["similarity"] == ranked[0].score > ranked[1].score
    with pytest.raises(RegistryError, match="not a built-in policy"):
        manager.similarity_search([{"variable": "task_description", "operator": "LIKE", "value": "x"}],
                                  policy_code_path="policies/my_policy.zip")


def test_known_llms_registers_lists_queries_and_removes(mode, acme_blocks):
    llms = mode["make"](KnownLLMs, mode["owner"], adhoc_inference_url="http://inference.invalid")
    block = llms.add_llm(name="my-llm", block_id="qa-llm")
    assert block.blockMetadata.tags == ["qa"]
    llms.add_custom_llm("custom", block_data=SEED_BLOCK)
    assert {name: b.id for name, b in llms.list_llms().items()} == {"my-llm": "qa-llm", "custom": "custom-llm-block"}
    assert llms.get_searchable_representation()[1] == {
        "id": "custom-llm-block", "description": "Custom summarization model", "tags": ["summary", "text"],
        "inputProtocols": ["text/plain"], "outputProtocols": ["text/plain"],
    }
    results = llms.query_blocks({"tags": ["qa"], "inputProtocols": ["text/plain"]})
    # opt-1 also has the tag but is an optimizer.
    assert sorted(b.id for b in results) == ["public-llm", "qa-llm"]
    llms.remove_llm("my-llm")
    assert list(llms.list_llms()) == ["custom"]
    with pytest.raises(KeyError, match="no llm registered under the name 'my-llm'"):
        llms.remove_llm("my-llm")
    with pytest.raises(ValueError, match="is a optimizer block"):
        llms.add_llm("opt", "opt-1")


def test_known_optimizers_see_only_optimizers(mode, acme_blocks):
    optimizers = mode["make"](KnownLLMOptimizers, mode["owner"])
    assert [b.id for b in optimizers.query_blocks({"tags": ["qa"]})] == ["opt-1"]
    optimizers.add_optimizer("opt", "opt-1")
    assert list(optimizers.list_optimizers()) == ["opt"]


def test_the_outsider_finds_only_public_blocks(mode, acme_blocks):
    manager = mode["make"](BlocksQueryManager, mode["outsider"])
    assert [b.id for b in manager.filter_data([{"variable": "tags", "operator": "==", "value": "qa"}])] == ["public-llm"]
    with pytest.raises(RegistryError) as error:
        manager.get_block("qa-llm")
    assert (error.value.status, error.value.message) == (404, "block not found")
    with pytest.raises(RegistryError) as delete:
        manager.delete_block("qa-llm")
    assert delete.value.status == 404
    assert BlockModel.objects.filter(block_id="qa-llm").exists()
    with pytest.raises(RegistryError) as plain:
        manager.get_block("public-llm")
    assert plain.value.status == 404  # another organization's block answers to its qualified id only
    assert manager.get_block("acme/public-llm").id == "public-llm"
    with pytest.raises(RegistryError) as public:
        manager.delete_block("acme/public-llm")
    assert public.value.status == 403


def test_a_custom_inference_object_runs_the_block(mode):
    llms = mode["make"](KnownLLMs, mode["owner"], adhoc_inference_url="http://inference.invalid")
    block = llms.create_custom_llm_block(
        id="reverse-llm", description="Reverses the input text", tags=["test", "reverse"],
        input_protocols=["text/plain"], output_protocols=["text/plain"], block_inference_object=ReverseTextLLM(),
    )
    assert block.to_dict()["blockMetadata"] == {"description": "Reverses the input text", "tags": ["test", "reverse"]}
    result = llms.run_ai_inference(name="reverse-llm", input_data={"text": "hello world"},
                                   session_id="session-001", frame_ptr=b"")
    assert result == "dlrow olleh"
    estimate = llms.estimate(name="reverse-llm", session_id="session-001", query={"input_size": 2048})
    assert estimate == {"check_execute": [True, {"status": "Ready", "query": {"input_size": 2048}}],
                        "estimates": [True, {"estimated_latency": "1ms"}]}
    with pytest.raises(KeyError):
        llms.run_ai_inference(name="nope", input_data={}, session_id="s", frame_ptr=b"")


def test_create_custom_llm_block_refuses_an_object_without_run_inference(mode):
    llms = mode["make"](KnownLLMs, mode["owner"])
    with pytest.raises(TypeError, match="LLMInferenceAPI"):
        llms.create_custom_llm_block(id="x", description="", tags=[], input_protocols=[], output_protocols=[],
                                     block_inference_object=object())


@pytest.mark.django_db
def test_a_wrong_key_is_refused_remotely(live_server, owner):
    manager = BlocksQueryManager(base_url=live_server.url, api_key="sb-not-a-key")
    with pytest.raises(RegistryError) as error:
        manager.filter_data([])
    assert (error.value.status, error.value.message) == (401, "Incorrect API key provided")


def test_an_unreachable_registry_is_a_clear_error():
    manager = BlocksQueryManager(base_url="http://127.0.0.1:9", api_key="k")
    with pytest.raises(RegistryError, match="cannot reach the registry at http://127.0.0.1:9"):
        manager.filter_data([])


def test_block_data_is_normalized_and_validated():
    block = Block({"id": "b", "inputProtocol": "text/plain"})
    assert block.to_dict() == {"id": "b", "blockMetadata": {"description": "", "tags": []}, "kind": "llm",
                               "inputProtocols": ["text/plain"], "outputProtocols": []}
    with pytest.raises(AttributeError):
        _ = block.nothing
    with pytest.raises(ValueError, match="non-empty string 'id'"):
        Block({"blockMetadata": {}})


def test_remote_queries_follow_pages(live_server, owner, monkeypatch):
    for n in range(5):
        BlockFactory(block_id=f"paged-{n}", organization=owner.organization, tags=["paged"])
    monkeypatch.setattr(remote_registry, "PAGE_SIZE", 2)
    manager = BlocksQueryManager(base_url=live_server.url, api_key=owner.key)
    found = manager.filter_data([{"variable": "tags", "operator": "==", "value": "paged"}])
    assert [b.id for b in found] == [f"paged-{n}" for n in range(5)]


# Running registry blocks: remotely on the server (the gateway serves /v1, so these need the
# ASGI app, the live gateway, not live_server), in-process through inference.sdk.in_process.


def run_python(script: str, *args: str, env: dict[str, str]) -> dict:
    """Run `script` in a fresh interpreter (this one already has Django set up); its last line is JSON."""
    done = subprocess.run([sys.executable, "-c", script, *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def env_without_django() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}


REMOTE_RECIPE = """
import json, sys
from inference.sdk import KnownLLMs

llms = KnownLLMs(base_url=sys.argv[1], api_key=sys.argv[2])
llms.add_llm(name="small", block_id="reverse-llm")
answer = llms.run_ai_inference(name="small", input_data={"text": "hello there"})
estimate = llms.estimate(name="small", session_id="s1", query={"input_size": 2048})
print(json.dumps({"answer": answer, "promptTokens": estimate["promptTokens"], "django": "django" in sys.modules}))
"""


@pytest.mark.django_db(transaction=True)
def test_remote_run_ai_inference_and_estimate_work_in_a_plain_python_process(live_gateway, owner):
    BlockFactory(block_id="reverse-llm", organization=owner.organization)
    result = run_python(REMOTE_RECIPE, live_gateway.url, owner.key, env=env_without_django())
    assert result == {"answer": "ereht olleh", "promptTokens": 2048, "django": False}


@pytest.mark.django_db(transaction=True)
def test_remote_run_ai_inference_goes_over_http_where_the_server_checks_the_key(live_gateway, owner, outsider):
    BlockFactory(block_id="reverse-llm", organization=owner.organization)
    BlockFactory(block_id="globex-secret", organization=outsider.organization)
    llms = KnownLLMs(base_url=live_gateway.url, api_key=owner.key)
    llms.add_llm(name="small", block_id="reverse-llm")
    assert llms.run_ai_inference(name="small", input_data={"text": "hello"}) == "olleh"
    # In-process dispatch would run any block; the server refuses one this key cannot see.
    llms.add_custom_llm("stolen", block_data={"id": "globex-secret"})
    with pytest.raises(RegistryError) as refused:
        llms.run_ai_inference(name="stolen", input_data={"text": "x"})
    assert refused.value.status == 404
    assert "The model 'globex-secret' does not exist" in refused.value.message


def test_adhoc_inference_url_overrides_the_base_url_for_inference(live_server, owner):
    BlockFactory(block_id="reverse-llm", organization=owner.organization)
    llms = KnownLLMs(base_url=live_server.url, api_key=owner.key, adhoc_inference_url="http://127.0.0.1:9")
    llms.add_llm(name="small", block_id="reverse-llm")
    with pytest.raises(RegistryError, match="cannot reach http://127.0.0.1:9/v1/chat/completions") as unreachable:
        llms.run_ai_inference(name="small", input_data={"text": "hello"})
    assert unreachable.value.status is None


def test_remote_estimate_takes_the_seeds_input_size_as_prompt_tokens(live_server, owner):
    BlockFactory(block_id="reverse-llm", organization=owner.organization)
    llms = KnownLLMs(base_url=live_server.url, api_key=owner.key)
    llms.add_llm(name="small", block_id="reverse-llm")
    estimate = llms.estimate(name="small", session_id="s1", query={"input_size": 2048})
    assert (estimate["blockId"], estimate["promptTokens"]) == ("reverse-llm", 2048)
    assert estimate["constraints"] == {"pass": True, "violations": []}
    with pytest.raises(RegistryError) as negative:
        llms.estimate(name="small", query={"input_size": -1})
    assert negative.value.status == 400
    assert "input_size must be a non-negative integer" in negative.value.message


def test_in_process_failures_raise_registry_error_too(db, owner):
    llms = KnownLLMs(organization="acme")
    llms.add_custom_llm("ghost", block_data={"id": "no-such-block"})
    with pytest.raises(RegistryError) as missing:
        llms.run_ai_inference(name="ghost", input_data={"text": "x"})
    assert (missing.value.status, missing.value.message) == (404, "no enabled block 'no-such-block'")


IN_PROCESS_RECIPE = """
import json
from inference.sdk import BlocksQueryManager, KnownLLMs

llms = KnownLLMs(organization="acme")
llms.add_llm(name="rev", block_id="reverse-llm")
found = BlocksQueryManager(organization="acme").filter_data([{"variable": "tags", "operator": "==", "value": "test"}])
print(json.dumps({"answer": llms.run_ai_inference(name="rev", input_data={"text": "abc"}),
                  "found": [b.id for b in found]}))
"""


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("settings_module", ["webapp.settings", None])
def test_an_in_process_manager_sets_django_up_in_a_fresh_interpreter(org, settings_module):
    BlockFactory(block_id="reverse-llm", organization=org)
    env = env_without_django()
    # The subprocess must see this test's database, not the one DATABASE_URL names.
    database_url = urllib.parse.urlsplit(env["DATABASE_URL"])
    env["DATABASE_URL"] = database_url._replace(path="/" + connection.settings_dict["NAME"]).geturl()
    if settings_module:
        env["DJANGO_SETTINGS_MODULE"] = settings_module
    assert run_python(IN_PROCESS_RECIPE, env=env) == {"answer": "cba", "found": ["reverse-llm"]}
