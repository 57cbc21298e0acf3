"""Access (block_access) then admit(): the constraint checker, precedence, and the rules cache's invalidation."""

from __future__ import annotations

import asyncio

import pytest
import redis
from django.conf import settings

from registry.models import BlockGrant
from registry.principal import Principal
from registry.services import api_key_create
from registry.tenancy.models import PolicyRule
from registry.tenancy.policy import GateError
from registry.tenancy.rules import RULES_POLL_S, VERSION_KEY
from tests.factories import BlockFactory
from tests.support.chat_requests import chat, principal_of
from tests.tenancy.conftest import admit_as

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def block(org):
    return BlockFactory(organization=org, block_id="acme-llm")


@pytest.fixture
def spare(org):
    return BlockFactory(organization=org, block_id="acme-spare")


@pytest.fixture
def foreign(other_org):
    return BlockFactory(organization=other_org, block_id="globex-secret")


@pytest.fixture
def principal(owner):
    return principal_of(owner)


@pytest.fixture
def intruder(outsider):
    return principal_of(outsider)


async def refused(principal, request, tokens=10) -> GateError:
    with pytest.raises(GateError) as caught:
        await admit_as(principal=principal, request=request, estimated_prompt_tokens=tokens)
    return caught.value


async def test_it_admits_its_own_block_with_the_default_policy(principal, block):
    admission = await admit_as(principal=principal, request=chat(block.block_id), estimated_prompt_tokens=5)
    assert admission.policy.retries == 0
    assert admission.policy.timeout_s == settings.UPSTREAM_TIMEOUT_S
    assert admission.reservation is None  # no quota: nothing to reserve
    await admission.settle(prompt_tokens=5, completion_tokens=5)


async def test_another_orgs_private_block_is_refused_exactly_like_a_missing_one(intruder, block):
    error = await refused(intruder, chat("acme-llm"))
    error_missing = await refused(intruder, chat("nope"))
    assert (error.status, error.code) == (404, "model_not_found") == (error_missing.status, error_missing.code)
    assert error.message == "The model 'acme-llm' does not exist or you do not have access to it."
    assert error_missing.message.replace("nope", "acme-llm") == error.message


async def test_a_granted_block_is_admitted_for_the_grantee(intruder, block, other_org):
    await BlockGrant.objects.acreate(block=block, organization=other_org)
    # A foreign block answers to its qualified id only.
    admission = await admit_as(principal=intruder, request=chat("acme/acme-llm"), estimated_prompt_tokens=1)
    assert admission.policy is not None


async def test_a_key_limited_to_other_models_gets_403_naming_the_rule(org, block, spare):
    key, _ = await asyncio.to_thread(api_key_create, organization=org, name="narrow", allowed_models=["acme-spare"])
    narrow = Principal(organization=org, api_key=key)
    error = await refused(narrow, chat(block.block_id))
    assert (error.status, error.code, error.rule) == (403, "model_not_allowed", "allowed_models")
    await admit_as(principal=narrow, request=chat(spare.block_id), estimated_prompt_tokens=1)


async def test_too_many_input_tokens_is_a_400_naming_the_rule(org, principal, block):
    await PolicyRule.objects.acreate(organization=org, max_input_tokens=100)
    error = await refused(principal, chat(block.block_id), tokens=250)
    assert (error.status, error.code, error.rule) == (400, "policy_violation", "max_input_tokens")
    assert error.message == "max_input_tokens 100 exceeded: 250"


async def test_asking_for_more_output_than_allowed_is_a_400_and_no_max_tokens_gets_the_cap(org, principal, block):
    await PolicyRule.objects.acreate(organization=org, block=block, max_output_tokens=64)
    error = await refused(principal, chat(block.block_id, max_tokens=65))
    assert (error.status, error.rule) == (400, "max_output_tokens")
    assert error.message == "max_output_tokens 64 exceeded: max_tokens is 65"
    request = chat(block.block_id)
    await admit_as(principal=principal, request=request, estimated_prompt_tokens=1)
    assert request.max_tokens == 64


async def test_a_protocol_outside_allowed_protocols_is_a_400(org, principal, block):
    await PolicyRule.objects.acreate(organization=org, allowed_protocols=["text/plain"])
    image = chat(block.block_id)
    image.messages = [{"role": "user", "content": [{"type": "text", "text": "what is this"},
                                                   {"type": "image_url", "image_url": {"url": "data:,"}}]}]
    error = await refused(principal, image)
    assert (error.status, error.code, error.rule) == (400, "policy_violation", "allowed_protocols")
    assert "image/*" in error.message
    declared = chat(block.block_id)
    declared.extra["switchboard"] = {"protocol": "application/json"}
    assert (await refused(principal, declared)).rule == "allowed_protocols"
    await admit_as(principal=principal, request=chat(block.block_id), estimated_prompt_tokens=1)


async def test_precedence_is_request_then_block_then_organization_then_defaults(org, principal, block, spare):
    await PolicyRule.objects.acreate(organization=org, timeout_s=10, retries=1, max_input_tokens=1000)
    await PolicyRule.objects.acreate(organization=org, block=block, timeout_s=20, fallbacks=["acme-spare"])

    plain = await admit_as(principal=principal, request=chat(block.block_id), estimated_prompt_tokens=1)
    assert (plain.policy.timeout_s, plain.policy.retries, plain.policy.fallbacks) == (20, 1, ("acme-spare",))
    other = await admit_as(principal=principal, request=chat(spare.block_id), estimated_prompt_tokens=1)
    assert (other.policy.timeout_s, other.policy.fallbacks) == (10, ())

    request = chat(block.block_id)
    request.extra["switchboard"] = {"timeout_s": 30, "retries": 3, "retry_on": [503], "max_input_tokens": 5000}
    custom = await admit_as(principal=principal, request=request, estimated_prompt_tokens=1)
    assert (custom.policy.timeout_s, custom.policy.retries, custom.policy.retry_on) == (30, 3, (503,))
    # A request can tighten a limit but never lift it.
    assert custom.policy.max_input_tokens == 1000
    assert "switchboard" not in request.extra  # never forwarded upstream


async def test_a_bad_request_level_policy_is_a_400(principal, block):
    request = chat(block.block_id)
    request.extra["switchboard"] = {"retries": 99}
    error = await refused(principal, request)
    assert (error.status, error.code) == (400, "invalid_request_error")
    assert "retries must be between 0 and 10" in error.message
    unknown = chat(block.block_id)
    unknown.extra["switchboard"] = {"sudo": True}
    assert "unknown field(s)" in (await refused(principal, unknown)).message


async def test_fallbacks_the_caller_cannot_see_are_dropped_from_rules_and_refused_in_requests(
        org, principal, block, foreign):
    # A rule written while the fallback was visible; the grant is then withdrawn.
    await PolicyRule.objects.acreate(organization=org, block=block, fallbacks=["globex-secret"])
    admission = await admit_as(principal=principal, request=chat(block.block_id), estimated_prompt_tokens=1)
    assert admission.policy.fallbacks == ()

    request = chat(block.block_id)
    request.extra["switchboard"] = {"fallbacks": ["globex-secret"]}
    error = await refused(principal, request)
    assert (error.status, error.code) == (404, "model_not_found")
    assert "globex-secret" in error.message and "do not have access" in error.message


async def test_an_edit_is_seen_by_the_next_request_without_a_restart(org, principal, block):
    rule = await PolicyRule.objects.acreate(organization=org, max_input_tokens=100)
    await refused(principal, chat(block.block_id), tokens=150)
    rule.max_input_tokens = 200
    await rule.asave()  # post_save bumps the version
    await admit_as(principal=principal, request=chat(block.block_id), estimated_prompt_tokens=150)


async def test_an_edit_made_by_another_process_is_seen_within_the_poll_interval(org, principal, block):
    await PolicyRule.objects.acreate(organization=org, max_input_tokens=100)
    await refused(principal, chat(block.block_id), tokens=150)
    # Another process: the row changes with no signal here, only the shared counter moves.
    await PolicyRule.objects.filter(organization=org).aupdate(max_input_tokens=500)
    redis.Redis.from_url(settings.REDIS_URL).incr(VERSION_KEY)
    await asyncio.sleep(RULES_POLL_S + 0.1)
    await admit_as(principal=principal, request=chat(block.block_id), estimated_prompt_tokens=150)
