"""Issue 8, "No tenant-chosen code or memory": a `python` class comes from the operator's allowlist,
checked before anything is imported; llama.cpp's model file, context and threads are the operator's."""

from __future__ import annotations

import sys
import uuid

import pytest

from inference.backends import llamacpp
from inference.backends.base import BackendError
from inference.backends.factory import backend_for_block
from registry.models import Block
from tests.factories import BlockFactory

REVERSE = {"class": "inference.backends.examples.ReverseTextLLM"}


@pytest.fixture
def throwaway_module(tmp_path, monkeypatch) -> str:
    """An importable module whose import would be visible: its name is in sys.modules once imported."""
    name = f"sb_throwaway_{uuid.uuid4().hex}"
    (tmp_path / f"{name}.py").write_text("print('imported: tenant code ran in the server')\n"
                                         "class Evil:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert name not in sys.modules
    yield name
    sys.modules.pop(name, None)


def block(backend_type: str, config: dict, block_id: str = "mine") -> dict:
    return {"id": block_id, "kind": "llm", "backend": {"type": backend_type, "config": config}}


def message(response) -> str:
    assert response.json()["success"] is False
    return response.json()["message"]


# The `this.s` recipe: a class path is never imported before it is checked.


@pytest.mark.parametrize("who", ["owner", "member", "outsider", "operator"])
def test_the_this_s_recipe_is_refused_and_nothing_is_imported(request, who):
    party = request.getfixturevalue(who)
    already = "this" in sys.modules
    response = party.client().post("/api/blocks", block("python", {"class": "this.s"}), format="json")
    assert response.status_code in ((403,) if who == "member" else ()) + (400,)
    assert "this" in sys.modules if already else "this" not in sys.modules
    assert not Block.objects.filter(block_id="mine").exists()


def test_a_python_class_outside_the_allowlist_is_refused_before_its_module_is_imported(operator, throwaway_module):
    response = operator.client().post("/api/blocks", block("python", {"class": f"{throwaway_module}.Evil"}),
                                      format="json")
    assert response.status_code == 400
    assert "PYTHON_BACKEND_MODULES" in message(response)
    assert throwaway_module not in sys.modules


def test_a_stored_python_block_outside_the_allowlist_is_refused_at_load_without_importing_it(org, throwaway_module):
    # Stored before the rule existed: the load-time check stands on its own.
    stored = BlockFactory(organization=org, block_id="old-python", backend_type="python",
                          backend_config={"class": f"{throwaway_module}.Evil"})
    with pytest.raises(BackendError) as caught:
        backend_for_block(stored)
    assert caught.value.code == "backend_misconfigured"
    assert "PYTHON_BACKEND_MODULES" in caught.value.message
    assert throwaway_module not in sys.modules


def test_the_operator_may_allow_a_module_of_their_own(operator, throwaway_module, settings):
    settings.PYTHON_BACKEND_MODULES = [throwaway_module]
    response = operator.client().post("/api/blocks", block("python", {"class": f"{throwaway_module}.Evil"}),
                                      format="json")
    # Allowed and stored; it is checked for being an LLMInferenceAPI only when it runs.
    assert response.status_code == 201, response.json()
    assert throwaway_module not in sys.modules


@pytest.mark.parametrize("path", ["inference.backends.examples..ReverseTextLLM", "inference.backends.examples",
                                  "inference.backends.examples.__builtins__", "inference.backends.examples.R x",
                                  "inference.backends.examplesevil.Thing"])
def test_a_class_path_that_is_not_a_plain_dotted_path_in_an_allowed_module_is_refused(operator, path):
    response = operator.client().post("/api/blocks", block("python", {"class": path}), format="json")
    assert response.status_code == 400
    assert "backend.config.class" in message(response)


# Only the operator creates python blocks.


def test_a_tenant_owner_cannot_create_a_python_block_even_from_an_allowed_module(owner):
    response = owner.client().post("/api/blocks", block("python", REVERSE), format="json")
    assert response.status_code == 400
    assert "only the server's operator may create python blocks" in message(response)


def test_a_member_cannot_create_a_python_block(member):
    response = member.client().post("/api/blocks", block("python", REVERSE), format="json")
    assert response.status_code in (400, 403)
    assert not Block.objects.filter(block_id="mine").exists()


def test_a_tenant_cannot_turn_its_block_into_a_python_block(owner, outsider):
    owner.client().post("/api/blocks", block("openai", {"base_url": "https://api.example.com/v1"}), format="json")
    response = owner.client().patch("/api/blocks/mine", {"backend": {"type": "python", "config": REVERSE}},
                                    format="json")
    assert response.status_code == 400
    assert outsider.client().patch("/api/blocks/mine", {"backend": {"type": "python", "config": REVERSE}},
                                   format="json").status_code == 404
    assert Block.objects.get(block_id="mine").backend_type == "openai"


def test_the_operator_can_create_a_python_block_from_an_allowed_module(operator):
    response = operator.client().post("/api/blocks", block("python", REVERSE), format="json")
    assert response.status_code == 201, response.json()
    stored = Block.objects.get(block_id="mine")
    assert backend_for_block(stored).run_inference({"text": "abc"}) == "cba"


def test_an_in_process_inference_object_is_never_stored_so_no_http_caller_reaches_it(owner):
    from inference.backends.examples import ReverseTextLLM
    from inference.sdk import KnownLLMs

    llms = KnownLLMs(organization=owner.organization)
    llms.create_custom_llm_block("in-proc", "", [], ["text/plain"], ["text/plain"],
                                 block_inference_object=ReverseTextLLM())
    assert llms.run_ai_inference("in-proc", {"text": "abc"}) == "cba"
    assert not Block.objects.filter(block_id="in-proc").exists()
    assert owner.client().get("/api/blocks/in-proc").status_code == 404


# llama.cpp: the model file, context and threads are the operator's.


@pytest.mark.parametrize("config", [{"n_ctx": 4096}, {"n_ctx": 8192}, {"n_threads": 8},
                                    {"model_path": "/etc/passwd"}, {"model_path": "/models/other.gguf"}])
@pytest.mark.parametrize("who", ["owner", "member"])
def test_a_tenant_cannot_set_llamacpp_model_path_n_ctx_or_n_threads(request, who, config):
    party = request.getfixturevalue(who)
    response = party.client().post("/api/blocks", block("llamacpp", config), format="json")
    assert response.status_code in ((403,) if who == "member" else ()) + (400,)
    if response.status_code == 400:
        assert f"backend.config.{next(iter(config))}: only the server's operator" in message(response)
    assert not Block.objects.filter(block_id="mine").exists()


def test_the_memory_recipe_two_llamacpp_blocks_with_different_n_ctx_by_a_tenant_load_nothing(owner):
    loaded = set(llamacpp._models)
    client = owner.client()
    for n, n_ctx in enumerate((4096, 8192)):
        assert client.post("/api/blocks", block("llamacpp", {"n_ctx": n_ctx}, f"big-{n}"),
                           format="json").status_code == 400
        assert client.post("/discovery/estimate", {"search_query": "hello", "block_id": f"big-{n}"},
                           format="json").status_code == 404
    assert set(llamacpp._models) == loaded


def test_a_tenant_may_register_a_llamacpp_block_on_the_bundled_model_with_server_defaults(owner, outsider):
    response = owner.client().post("/api/blocks", block("llamacpp", {"timeout_s": 30}), format="json")
    assert response.status_code == 201, response.json()
    # Another tenant can neither read nor repoint it.
    assert outsider.client().patch("/api/blocks/mine", {"backend": {"type": "llamacpp", "config": {}}},
                                   format="json").status_code == 404


def test_a_tenant_cannot_add_n_ctx_to_its_llamacpp_block_afterwards(owner):
    owner.client().post("/api/blocks", block("llamacpp", {}), format="json")
    response = owner.client().patch("/api/blocks/mine", {"backend": {"type": "llamacpp", "config": {"n_ctx": 4096}}},
                                    format="json")
    assert response.status_code == 400
    assert Block.objects.get(block_id="mine").backend_config == {}


def test_the_operator_may_set_llamacpp_n_ctx_up_to_llamacpp_max_context_only(operator, settings):
    settings.LLAMACPP_MAX_CONTEXT = 4096
    client = operator.client()
    assert client.post("/api/blocks", block("llamacpp", {"n_ctx": 4096, "n_threads": 1}, "ok"),
                       format="json").status_code == 201
    response = client.post("/api/blocks", block("llamacpp", {"n_ctx": 4097}, "too-big"), format="json")
    assert response.status_code == 400
    assert "LLAMACPP_MAX_CONTEXT" in message(response)
    for bad in ({"n_ctx": "2048"}, {"n_ctx": True}, {"n_threads": 0}, {"model_path": "relative.gguf"}):
        assert client.post("/api/blocks", block("llamacpp", bad, "bad"), format="json").status_code == 400


def test_a_stored_llamacpp_block_above_the_cap_is_refused_at_load(org, settings):
    settings.LLAMACPP_MAX_CONTEXT = 2048
    stored = BlockFactory(organization=org, block_id="old-llama", backend_type="llamacpp",
                          backend_config={"n_ctx": 32768})
    with pytest.raises(BackendError, match="LLAMACPP_MAX_CONTEXT"):
        backend_for_block(stored)
