"""One end-to-end agent run on the built-in model (SmolLM2-135M) through the live gateway over HTTP, with a
one-field signature: a 135M model cannot follow longer formats (docs/agents.md says so). Its answer comes
as JSON through `response_format` json_schema, which the built-in backend enforces with a grammar."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.core.management import call_command

from inference.agents.agent import agent
from inference.agents.ai import HttpAI

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture
def builtin_block(db) -> str:
    call_command("load_builtin_blocks")
    return settings.SWITCHBOARD_BUILTIN_BLOCK_ID


async def test_an_agent_answers_a_one_field_signature_on_the_built_in_model(live_gateway, owner, builtin_block):
    ai = HttpAI(builtin_block, base_url=live_gateway.v1, api_key=owner.key)
    helper = agent("question:string -> answer:string", name="smallhelper",
                   description="Answers short general knowledge questions", max_tokens=48, temperature=0)
    events = [event async for event in helper.events(ai, {"question": "What is the capital of France?"})]
    done = events[-1]
    assert done.type == "done" and isinstance(done.data["output"]["answer"], str)
    assert done.data["output"]["answer"].strip()
    assert done.data["usage"]["completion_tokens"] > 0
    assert events[0].data["json_output"] is True
