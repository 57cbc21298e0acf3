"""The seed's own SDK examples run as the seed writes them (tests/sdk_examples/, see its README), each in a
plain Python process with no Django settings, against a live gateway holding the blocks they name."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.support.live_server import ROOT, LiveGateway, start_gateway
from tests.support.plain_http import request

EXAMPLES = ROOT / "tests" / "sdk_examples"
SEED_NAMES = ["AIOSEstimatorClient", "AIOSInferenceAPI", "BlocksQueryManager", "KnownLLMOptimizers", "KnownLLMs",
              "LLMInferenceAPI", "OpenAIInferenceAPI", "OrgLLMInferenceAPI", "OrgLLMsManager"]


@pytest.fixture(scope="module")
def seed_gateway(django_db_setup, django_db_blocker) -> Iterator[LiveGateway]:
    gateway = start_gateway()
    yield gateway
    gateway.process.terminate()
    try:
        gateway.process.wait(20)
    except subprocess.TimeoutExpired:
        gateway.process.kill()
        raise


def register(gateway: LiveGateway, key: str, block: dict) -> None:
    """Through the REST API, as a seed user's organization would."""
    reply = request("POST", f"{gateway.url}/api/blocks", json.dumps(block),
                    {"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    assert reply.status == 201, reply.body


@pytest.fixture
def seed_blocks(seed_gateway, owner, fake_upstream):
    """The blocks the examples name or find: "llm-block-123" (add_llm), "gpt-4" (the model behind the
    OpenAIInferenceAPI wrapper), a "qa" block to query and a "summarization" one to discover."""
    def llm(block_id: str, description: str, tags: list[str], scenario: str) -> dict:
        return {"id": block_id, "blockMetadata": {"description": description, "tags": tags},
                "inputProtocols": ["text/plain"], "outputProtocols": ["text/plain"],
                "backend": {"type": "openai", "config": {"base_url": fake_upstream.base_url(scenario)}}}

    register(seed_gateway, owner.key, llm("llm-block-123", "Answers questions", ["qa"], "chunks3"))
    register(seed_gateway, owner.key, llm("gpt-4", "A chat model", ["chat"], "chunks5"))
    register(seed_gateway, owner.key, llm("paper-summarizer", "Summarizes research papers", ["summarization"],
                                          "chunks4"))
    return owner


def run_example(name: str, gateway: LiveGateway, key: str) -> list[str]:
    """The script's printed lines; it runs with no DJANGO_SETTINGS_MODULE, the repository importable."""
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env.update(SWITCHBOARD_URL=gateway.url, SWITCHBOARD_API_KEY=key, PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, str(EXAMPLES / name)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def split_printed(line: str) -> tuple[str, dict]:
    """`print(name, some_dict)` -> (name, the dict)."""
    name, _, rest = line.partition(" ")
    return name, ast.literal_eval(rest)


def check_walkthrough(lines: list[str]) -> None:
    listed = dict(split_printed(line) for line in lines[:2])
    assert listed["my-llm"]["blockMetadata"] == {"description": "Custom summarization model",
                                                 "tags": ["summary", "text"]}
    assert listed["openai-wrapper"]["blockMetadata"] == {"description": "OpenAI GPT-4 wrapper",
                                                         "tags": ["openai", "chat"]}
    # query_blocks: the organization's "qa" LLM; then the answer of "gpt-4" behind the wrapper.
    assert lines[2:4] == ["llm-block-123 Answers questions", "tok0 tok1 tok2 tok3 tok4"]
    estimate = ast.literal_eval(lines[4])
    assert estimate["check_execute"][0] is True
    assert (estimate["check_execute"][1]["id"], estimate["check_execute"][1]["owned_by"]) == ("gpt-4", "acme")
    assert estimate["estimates"][0] is True
    assert estimate["estimates"][1]["blockId"] == "gpt-4"
    assert estimate["estimates"][1]["constraints"] == {"pass": True, "violations": []}
    assert lines[5:] == ["openai-wrapper OpenAI GPT-4 wrapper ['openai', 'chat']"]


def check_discovery(lines: list[str]) -> None:
    # The filter finds the "qa" block; the similarity search (the seed's policy path maps to the default,
    # cosine) ranks the summarizer first, then the organization's other blocks, each once.
    assert lines[:2] == ["llm-block-123 Answers questions", "paper-summarizer Summarizes research papers"]
    ranked = [line.split(" ", 1)[0] for line in lines[1:]]
    assert len(ranked) == len(set(ranked)) > 1 and "llm-block-123" in ranked[1:]


def check_integration(lines: list[str]) -> None:
    assert lines == ["tok0 tok1 tok2 tok3"]  # the discovered summarizer's answer, run by the server


def check_reverse(lines: list[str]) -> None:
    assert lines == ["dlrow olleh"]


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("script", "check"), [
    ("known_llms_walkthrough.py", check_walkthrough),
    ("discovering_blocks.py", check_discovery),
    ("integrating_discovered_blocks.py", check_integration),
    ("custom_llm_model.py", check_reverse),
    ("custom_llm_from_the_sdk.py", check_reverse),
])
def test_the_seeds_example_runs_as_written_in_a_plain_script(seed_gateway, seed_blocks, script, check):
    check(run_example(script, seed_gateway, seed_blocks.key))


def test_every_example_of_the_seed_is_here():
    scripts = {path.name for path in EXAMPLES.glob("*.py")}
    assert scripts == {"known_llms_walkthrough.py", "discovering_blocks.py", "integrating_discovered_blocks.py",
                       "custom_llm_model.py", "custom_llm_from_the_sdk.py"}
    for path in EXAMPLES.glob("*.py"):
        assert "agents_sdk" not in path.read_text(), path.name


@pytest.mark.slow
def test_the_seeds_names_import_from_one_place_without_django():
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env["PYTHONPATH"] = str(ROOT)
    script = ("import json, sys\nfrom inference.sdk import *\n"
              "print(json.dumps({'names': sorted(n for n in dir() if n[0].isupper()),"
              " 'django': sorted(m for m in sys.modules if m.split('.')[0] in ('django', 'rest_framework'))}))")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert set(SEED_NAMES) <= set(found["names"])
    assert found["django"] == []
