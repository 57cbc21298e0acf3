"""The built-in SmolLM2 as the planner model: llama.cpp turns the selector's json_schema into a grammar, so
even a 135M model can only answer one JSON object whose id is a candidate's (or "none")."""

from __future__ import annotations

import json

import pytest
from django.conf import settings
from django.core.management import call_command

from inference.backends.base import ChatRequest
from inference.backends.llamacpp import LlamaCppBackend
from inference.planner.selector import LLMSelectorPlanner, Task
from tests.factories import BlockFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

CANDIDATES = [
    {"id": "acme-translate", "description": "Translates German text into English.", "tags": ["translation"]},
    {"id": "acme-summarize", "description": "Condenses news articles into key points.", "tags": ["summary"]},
]


async def test_smollm2_answers_the_selectors_schema_with_a_candidate_id():
    backend = LlamaCppBackend()
    selector = LLMSelectorPlanner(None)
    task = Task(text="Render this German paragraph in English: Guten Morgen, wie geht es dir?")
    request = ChatRequest(messages=selector.build_prompt(task, CANDIDATES), model="builtin", temperature=0,
                          max_tokens=300, response_format=selector.response_format(CANDIDATES))
    reply = (await backend.complete(request))["choices"][0]["message"]["content"]
    answer = json.loads(reply)  # no fences, no prose: the grammar allows the object only
    assert answer["id"] in ("acme-translate", "acme-summarize", "none") and isinstance(answer["reason"], str)
    assert selector.parse(reply, CANDIDATES)[0] == (None if answer["id"] == "none" else answer["id"])


def test_select_with_the_builtin_planner_takes_its_answer_on_the_first_attempt(owner):
    call_command("load_builtin_blocks")
    for candidate in CANDIDATES:
        BlockFactory(organization=owner.organization, block_id=candidate["id"], description=candidate["description"],
                     tags=candidate["tags"])
    response = owner.client().post("/api/planner/select", {
        "task": "Render this German paragraph in English", "candidates": [c["id"] for c in CANDIDATES],
        "planner": settings.SWITCHBOARD_BUILTIN_BLOCK_ID}, format="json")
    data = response.json()["data"]
    assert (data["source"], data["attempts"]) == ("planner", 1), data
    assert data["id"] in (None, "acme-translate", "acme-summarize")
