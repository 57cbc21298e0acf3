"""inference.sdk.Runtime, the seed's Python client: in this process (no server) and remote (a live gateway's
/ws/runtime/), and the seed's own examples run as written in plain Python processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from inference.runtime.models import Component
from inference.sdk import Runtime, VMError
from tests.support.live_server import ROOT

pytestmark = pytest.mark.django_db(transaction=True)

EXAMPLES = ROOT / "tests" / "runtime_examples"
HI = [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]


@pytest.fixture
def local_runtime(owner, monkeypatch):
    monkeypatch.delenv("SWITCHBOARD_URL", raising=False)
    runtime = Runtime(organization="acme")
    yield runtime
    runtime.stop()


def test_in_process_call_gives_none_one_value_or_a_list(local_runtime, owner, upstream_block):
    upstream_block(owner.organization, "chunks3", block_id="acme-lm")
    assert local_runtime.call("echo", {"text": "Hello world"}) == {"text": "Hello world"}
    assert local_runtime.define("language_model", "lm0", {"model": "acme-lm"}) is None
    deltas = local_runtime.call_method("lm0", "infer", {"messages": HI})
    assert isinstance(deltas, list) and [d["finish_reason"] for d in deltas] == [None, None, None, "stop"]
    assert list(local_runtime.call_iter("calculator", {"expression": "6 * 7"})) == [{"value": 42}]
    local_runtime.delete("lm0")
    assert not Component.objects.filter(name="lm0").exists()


def test_in_process_failures_raise_with_the_vms_reason(local_runtime):
    with pytest.raises(VMError) as refused:
        local_runtime.call("split_text", {"text": "x", "chunk_size": 5, "chunk_overlap": 6})
    assert refused.value.status == 400 and "chunk_overlap" in refused.value.message
    with pytest.raises(VMError) as missing:
        local_runtime.call_method("nothing", "infer", {})
    assert missing.value.status == 404 and missing.value.code == "component_not_found"


def test_a_component_defined_in_process_is_the_one_the_organization_has(local_runtime, owner):
    local_runtime.define("vector_store", "kb", {})
    local_runtime.call_method("kb", "insert", {"embedding": [1, 0], "document": "kept"})
    assert Component.objects.get(organization=owner.organization, name="kb").type == "vector_store"
    with Runtime(organization="acme") as another:  # another VM of the same organization: the same store
        found = another.call_method("kb", "retrieve", {"query_embedding": [1, 0]})
    assert found["results"][0]["document"] == "kept"


def test_the_remote_runtime_streams_and_cancels_when_the_caller_stops_reading(live_gateway, owner, upstream_block,
                                                                              fake_upstream):
    upstream_block(owner.organization, "delay50-chunks40", block_id="acme-slow")
    aborted = fake_upstream.stats.streams_aborted
    with Runtime(live_gateway.url, api_key=owner.key) as rt:
        assert rt.call("echo", {"text": "Hello world"}) == {"text": "Hello world"}
        rt.define("language_model", "slow", {"model": "acme-slow"})
        for n, _ in enumerate(rt.call_iter_method("slow", "infer", {"messages": HI})):
            if n == 1:
                break  # the generator closes: the client sends a cancel
        assert rt.call("echo", {"after": True}) == {"after": True}
        with pytest.raises(VMError) as refused:
            rt.define("language_model", "slow", {"model": "acme-slow"})
        assert refused.value.status == 409
        rt.delete("slow")
    for _ in range(50):
        if fake_upstream.stats.streams_aborted > aborted:
            break
        time.sleep(0.05)
    assert fake_upstream.stats.streams_aborted == aborted + 1


def test_a_remote_runtime_with_a_wrong_key_raises(live_gateway):
    with Runtime(live_gateway.url, api_key="sb-wrong") as rt, pytest.raises(VMError) as refused:
        rt.call("echo", {})
    assert refused.value.status == 401


def _paragraph(n: int) -> str:
    # ~3,000 characters: two never fit in one 4,000-character chunk, so each paragraph is one chunk.
    return " ".join(f"Paragraph {n} sentence {i} of the story of Simon the shoemaker." for i in range(48))


def run_example(name: str, url: str, key: str, cwd: Path) -> str:
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env.update(SWITCHBOARD_URL=url, SWITCHBOARD_API_KEY=key, PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, str(EXAMPLES / name)], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_seeds_runtime_examples_run_as_written(live_gateway, owner, upstream_block, tmp_path):
    upstream_block(owner.organization, "chunks3", block_id="qwen3-0.6b")
    upstream_block(owner.organization, "chunks4", block_id="qwen3-8b")
    (tmp_path / "what_men_live_by.txt").write_text("\n\n".join(_paragraph(n) for n in range(12)))

    assert run_example("echo.py", live_gateway.url, owner.key, tmp_path) == "{'text': 'Hello world'}\n"
    split = run_example("split_text.py", live_gateway.url, owner.key, tmp_path).splitlines()
    assert split[0] == "12" and split[2] == _paragraph(0)
    printed = run_example("direct_inference.py", live_gateway.url, owner.key, tmp_path).splitlines()
    assert printed[0] == str({"message": {"role": "assistant", "content": [{"type": "text", "text": "tok0 "}]},
                              "finish_reason": None})
    assert len(printed) == 4 and "'finish_reason': 'stop'" in printed[-1]
    assert run_example("chain_of_thought.py", live_gateway.url, owner.key, tmp_path) == "tok0 tok1 tok2 tok3 "
    assert run_example("system_message.py", live_gateway.url, owner.key, tmp_path) == "tok0 tok1 tok2 tok3 "
    assert not Component.objects.filter(organization=owner.organization).exists()  # each deleted its lm0


def test_every_python_example_of_the_seed_is_here():
    assert {path.name for path in EXAMPLES.glob("*.py")} == {
        "echo.py", "split_text.py", "direct_inference.py", "chain_of_thought.py", "system_message.py"}
    for path in EXAMPLES.glob("*.py"):
        assert "ailoy" not in path.read_text() and "from inference.sdk import Runtime" in path.read_text()
