"""The bundled SmolLM2-135M-Instruct answering through the live gateway."""

from __future__ import annotations

import re

import openai
import pytest
from django.core.management import call_command

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def is_a_sentence(text: str) -> bool:
    return len(re.findall(r"[A-Za-z]{2,}", text)) >= 3


@pytest.fixture
def builtin_block(db):
    call_command("load_builtin_blocks")
    from django.conf import settings

    return settings.SWITCHBOARD_BUILTIN_BLOCK_ID


def test_smollm2_answers_a_question_through_the_openai_client(live_gateway, owner, builtin_block):
    client = openai.OpenAI(base_url=live_gateway.v1, api_key=owner.key, max_retries=0, timeout=120)
    reply = client.chat.completions.create(model=builtin_block, messages=QUESTION, max_tokens=48, temperature=0)
    text = reply.choices[0].message.content
    assert is_a_sentence(text), text
    assert reply.model == builtin_block
    assert reply.usage.prompt_tokens > 0 and reply.usage.completion_tokens > 0


def test_smollm2_streams_an_answer(live_gateway, owner, builtin_block):
    client = openai.OpenAI(base_url=live_gateway.v1, api_key=owner.key, max_retries=0, timeout=120)
    chunks = list(client.chat.completions.create(model=builtin_block, messages=QUESTION, max_tokens=48,
                                                 temperature=0, stream=True,
                                                 stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert is_a_sentence(text), text
    assert chunks[-1].usage.completion_tokens > 0


def test_smollm2_is_listed_for_every_organization(live_gateway, outsider, builtin_block):
    client = openai.OpenAI(base_url=live_gateway.v1, api_key=outsider.key, max_retries=0)
    assert builtin_block in {m.id for m in client.models.list()}
