"""The pipeline carries out the admitted Policy: retries with backoff, then the fallbacks admission checked."""

from __future__ import annotations

import pytest

from inference.backends.openai_compat import close_sessions
from inference.gateway.errors import OpenAIError
from inference.gateway.pipeline import ChatCall, prepare
from inference.gateway.validation import parse_chat_body
from registry.models import Block
from registry.principal import Principal
from registry.tenancy.models import PolicyRule
from registry.tenancy.policy import Admission, Policy

pytestmark = pytest.mark.django_db(transaction=True)


def call_for(block: Block, policy: Policy, *, stream: bool = False) -> ChatCall:
    chat = parse_chat_body({"model": block.block_id, "messages": [{"role": "user", "content": "hi"}],
                            "stream": stream})
    return ChatCall(principal=Principal(organization=block.organization), chat=chat, block=block,
                    admission=Admission(policy=policy))


async def admitted_call(block: Block, *, fallbacks: list[str], stream: bool = False) -> ChatCall:
    """A call prepared the gateway's way (access, then admit with the request's fallbacks)."""
    body = {"model": block.block_id, "messages": [{"role": "user", "content": "hi"}], "stream": stream,
            "switchboard": {"fallbacks": fallbacks}}
    return await prepare(Principal(organization=block.organization), body)


@pytest.fixture
def blocks(org, other_org, upstream_block) -> dict[str, Block]:
    # Made here, not in the async tests: the ORM is synchronous.
    made = [upstream_block(org, scenario, block_id=block_id) for block_id, scenario in [
        ("acme-flaky", "flaky2-chunks5"), ("acme-flakier", "flaky3-chunks6"), ("acme-strict", "status400-chunks7"),
        ("acme-down", "status503"), ("acme-backup", "ok"), ("acme-down-stream", "status500"),
        ("acme-backup-stream", "chunks3"), ("acme-hangs", "hang")]]
    made.append(upstream_block(other_org, "ok", block_id="globex-private"))
    return {b.block_id: b for b in made}


@pytest.fixture(autouse=True)
async def _close_pooled_sessions():
    yield
    await close_sessions()


async def test_it_retries_a_retryable_upstream_failure_until_it_succeeds(blocks, fake_upstream):
    block = blocks["acme-flaky"]
    reply = await call_for(block, Policy(retries=2, backoff_s=0.01)).complete()
    assert reply["choices"][0]["message"]["content"].startswith("tok0")
    assert fake_upstream.stats.by_scenario["flaky2-chunks5"] == 3


async def test_it_gives_up_after_the_policys_retries(blocks, fake_upstream):
    block = blocks["acme-flakier"]
    with pytest.raises(OpenAIError) as caught:
        await call_for(block, Policy(retries=1, backoff_s=0.01)).complete()
    assert caught.value.status == 502
    assert fake_upstream.stats.by_scenario["flaky3-chunks6"] == 2


async def test_it_never_retries_a_bad_request(blocks, fake_upstream):
    block = blocks["acme-strict"]
    with pytest.raises(OpenAIError) as caught:
        await call_for(block, Policy(retries=3, backoff_s=0.01)).complete()
    assert caught.value.status == 400
    assert fake_upstream.stats.by_scenario["status400-chunks7"] == 1


async def test_it_falls_back_to_the_next_block_and_answers_as_that_block(blocks):
    primary = blocks["acme-down"]
    call = await admitted_call(primary, fallbacks=["acme-backup"])
    reply = await call.complete()
    assert reply["model"] == "acme-backup"
    assert call.block.block_id == "acme-backup"


async def test_a_stream_falls_back_before_its_first_byte(blocks):
    primary = blocks["acme-down-stream"]
    call = await admitted_call(primary, fallbacks=["acme-backup-stream"], stream=True)
    text = "".join([delta.content async for delta in call.stream()])
    assert text == "tok0 tok1 tok2 "
    assert call.block.block_id == "acme-backup-stream"


async def test_a_fallback_the_caller_may_not_see_is_skipped(blocks):
    primary = blocks["acme-down"]
    # A stored rule's fallback the caller may not run is dropped by admission (a request naming it is a 404).
    await PolicyRule.objects.acreate(organization=primary.organization, block=primary, fallbacks=["globex-private"])
    call = await prepare(Principal(organization=primary.organization),
                         {"model": primary.block_id, "messages": [{"role": "user", "content": "hi"}]})
    with pytest.raises(OpenAIError) as caught:
        await call.complete()
    assert caught.value.status == 502


async def test_the_policy_timeout_bounds_each_attempt(blocks):
    block = blocks["acme-hangs"]
    with pytest.raises(OpenAIError) as caught:
        await call_for(block, Policy(timeout_s=0.2)).complete()
    assert caught.value.status == 504


class RecordingAdmission(Admission):
    """Stands in for tenancy's reservation: the gateway's half of the contract is what is tested."""

    def __init__(self, policy: Policy):
        super().__init__(policy=policy)
        self.calls: list[tuple] = []

    async def settle(self, *, prompt_tokens: int, completion_tokens: int) -> None:
        self.calls.append(("settle", prompt_tokens, completion_tokens))

    async def release(self) -> None:
        self.calls.append(("release",))


def call_with(block: Block, admission: Admission, *, stream: bool = False) -> ChatCall:
    chat = parse_chat_body({"model": block.block_id, "messages": [{"role": "user", "content": "hi"}],
                            "stream": stream})
    return ChatCall(principal=Principal(organization=block.organization), chat=chat, block=block,
                    admission=admission)


async def test_it_settles_the_upstreams_usage_after_a_completion(blocks):
    admission = RecordingAdmission(Policy())
    await call_with(blocks["acme-backup"], admission).complete()
    assert admission.calls == [("settle", 8, 16)]


async def test_it_settles_a_streams_usage(blocks):
    admission = RecordingAdmission(Policy())
    [delta async for delta in call_with(blocks["acme-backup-stream"], admission, stream=True).stream()]
    assert admission.calls == [("settle", 8, 3)]


async def test_it_releases_the_reservation_when_nothing_ran(blocks):
    admission = RecordingAdmission(Policy())
    with pytest.raises(OpenAIError):
        await call_with(blocks["acme-down"], admission).complete()
    assert admission.calls == [("release",)]
