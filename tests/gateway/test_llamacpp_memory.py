"""Issue 8, "No tenant-chosen code or memory", the memory half: one llama.cpp instance per model file
per process, freed when the blocks using it change or go; a tenant's recipe leaves the live server's
RSS where it was."""

from __future__ import annotations

import gc
import json
import shutil
import weakref
from pathlib import Path

import pytest

from inference.backends import llamacpp
from inference.backends.factory import backend_for_block
from registry.builtin import builtin_block_load, smollm2_gguf_path
from registry.models import Block
from tests.conftest import Party
from tests.support.plain_http import request

pytestmark = pytest.mark.slow

# What a live server's RSS may drift by over a few requests without loading anything (MB).
RSS_NOISE_MB = 25


@pytest.fixture
def model_copy(tmp_path) -> Path:
    """The bundled GGUF under a path of its own, so no other test's backend holds it loaded."""
    path = tmp_path / "smollm2-copy.gguf"
    shutil.copyfile(smollm2_gguf_path(), path)
    return path


def llama_block(block_id: str, config: dict) -> dict:
    return {"id": block_id, "kind": "llm", "backend": {"type": "llamacpp", "config": config}}


def test_two_operator_blocks_on_one_model_file_share_one_instance_and_deleting_or_changing_them_frees_it(
        operator, model_copy):
    client = operator.client()
    for block_id, config in (("small", {"n_ctx": 512, "n_threads": 2}), ("large", {"n_ctx": 1024, "n_threads": 1})):
        response = client.post("/api/blocks", llama_block(block_id, {"model_path": str(model_copy), **config}),
                               format="json")
        assert response.status_code == 201, response.json()
    small = backend_for_block(Block.objects.get(block_id="small"))
    large = backend_for_block(Block.objects.get(block_id="large"))
    key = llamacpp.model_key(model_copy)

    first = small.model()
    shared = large.model()  # asks for a larger context: the one instance grows, it is not duplicated
    assert small.model() is shared and shared.n_ctx == 1024
    assert [k for k in llamacpp._models if k == key] == [key]
    assert small.run_inference({"text": "Say hi.", "max_tokens": 3, "temperature": 0})
    freed = weakref.ref(shared.llama)
    replaced = weakref.ref(first.llama)
    del first, shared
    gc.collect()
    assert replaced() is None  # the smaller instance went when the larger one replaced it

    assert client.delete("/api/blocks/small").status_code == 200
    assert key in llamacpp._models  # "large" still uses it
    changed = {"backend": {"type": "llamacpp", "config": {"model_path": str(model_copy), "n_ctx": 768}}}
    response = client.patch("/api/blocks/large", changed, format="json")
    assert response.status_code == 200, response.json()
    # Changed: the old backend let go of the file, and nothing else held it.
    assert key not in llamacpp._models
    del small, large
    gc.collect()
    assert freed() is None

    reloaded = backend_for_block(Block.objects.get(block_id="large"))
    assert reloaded.model().n_ctx == 768
    freed = weakref.ref(llamacpp._models[key].llama)
    assert client.delete("/api/blocks/large").status_code == 200
    del reloaded
    gc.collect()
    assert key not in llamacpp._models and freed() is None


def vm_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


def call(gateway, party: Party, method: str, path: str, body: dict | None = None):
    return request(method, gateway.url + path, json.dumps(body) if body is not None else None,
                   {"Authorization": f"Bearer {party.key}", "Content-Type": "application/json"}, timeout=60)


@pytest.mark.django_db(transaction=True)
def test_the_memory_recipe_is_refused_and_the_live_servers_rss_does_not_move(live_gateway, owner, operator,
                                                                                model_copy):
    builtin = builtin_block_load(organization=operator.organization)
    estimate = {"search_query": "How tall is the Eiffel tower?"}
    # Warm: the bundled model is loaded once, for every tenant's llamacpp block on it.
    assert call(live_gateway, owner, "POST", "/api/blocks", llama_block("mine", {})).status == 201
    for block_id in (builtin.block_id, "mine"):
        reply = call(live_gateway, owner, "POST", "/discovery/estimate", {**estimate, "block_id": block_id})
        assert reply.status == 200 and reply.json()["data"]["tokenCounting"] == "llamacpp tokenizer", reply.body
    before = vm_rss_mb(live_gateway.process.pid)

    # The recipe: two blocks with their own n_ctx (and a model file), then an estimate on each.
    for n, config in enumerate(({"n_ctx": 4096}, {"n_ctx": 8192, "model_path": str(model_copy)})):
        reply = call(live_gateway, owner, "POST", "/api/blocks", llama_block(f"big-{n}", config))
        assert reply.status == 400 and "only the server's operator" in reply.json()["message"]
        assert call(live_gateway, owner, "POST", "/discovery/estimate",
                    {**estimate, "block_id": f"big-{n}"}).status == 404
    # What a tenant may do instead shares the loaded model.
    assert call(live_gateway, owner, "POST", "/api/blocks", llama_block("mine-too", {"timeout_s": 30})).status == 201
    assert call(live_gateway, owner, "POST", "/discovery/estimate", {**estimate, "block_id": "mine-too"}).status == 200
    after = vm_rss_mb(live_gateway.process.pid)
    assert abs(after - before) < RSS_NOISE_MB, (before, after)

    # The operator may load another file; deleting the block gives the memory back.
    assert call(live_gateway, operator, "POST", "/api/blocks",
                llama_block("ops-big", {"model_path": str(model_copy), "n_ctx": 4096})).status == 201
    assert call(live_gateway, operator, "POST", "/discovery/estimate", {**estimate, "block_id": "ops-big"}).status == 200
    loaded = vm_rss_mb(live_gateway.process.pid)
    assert call(live_gateway, operator, "DELETE", "/api/blocks/ops-big").status == 200
    freed = vm_rss_mb(live_gateway.process.pid)
    print(f"live server RSS (MB): warm {before:.0f}, after the refused recipe {after:.0f}, "
          f"operator's second file loaded {loaded:.0f}, after deleting its block {freed:.0f}")
    assert loaded - after > 100
    assert freed - after < (loaded - after) / 2
