"""`admit`: constraints, then quota, for a call `access.block_access` allowed (types in policy.py).

Access is not checked here again: the BlockAccess is the proof. Fallbacks a request names are
checked by the same `block_access`; those of the stored rules were resolved under the same rule
when the rules were loaded, and are checked against the key here.

Nothing here touches the database on the hot path: the organization's rules come from the
rules cache, and the quota check is one Redis script call.
"""

from __future__ import annotations

from dataclasses import replace

from registry.models import Block
from registry.principal import Principal
from registry.tenancy.access import BlockAccess, block_access, key_refusal, model_not_found
from registry.tenancy.constraints import check_constraints, effective_policy, request_protocols, request_rule
from registry.tenancy.policy import Admission, AdmissionRequest, GateError, Policy
from registry.tenancy.quota import QuotaExceeded, quota_store
from registry.tenancy.rules import OrgRules, rules_cache

# Tokens reserved for the answer when neither the request nor a policy caps it.
DEFAULT_COMPLETION_RESERVE = 256


async def _requested_fallback(principal: Principal, reference: str) -> Block:
    try:
        return (await block_access(principal=principal, model=reference, names=False)).block
    except GateError:
        # A fallback the caller may not run looks missing, whichever check refused it.
        raise model_not_found(reference, param=None) from None


async def _checked_fallbacks(policy: Policy, *, principal: Principal, rules: OrgRules,
                             from_request: bool) -> tuple[Policy, tuple[Block, ...]]:
    if not policy.fallbacks:
        return policy, ()
    kept: dict[str, Block] = {}
    for reference in policy.fallbacks:
        if from_request:
            kept[reference] = await _requested_fallback(principal, reference)
            continue
        block = rules.usable_fallbacks.get(reference)
        # A stored rule's fallback that is no longer usable is dropped, never revealed.
        if block is not None and key_refusal(principal, block, reference) is None:
            kept[reference] = block
    return replace(policy, fallbacks=tuple(kept)), tuple(kept.values())


def reserve_tokens(request: AdmissionRequest, policy: Policy, prompt_tokens: int) -> int:
    completion = getattr(request, "max_tokens", None) or policy.max_output_tokens or DEFAULT_COMPLETION_RESERVE
    return max(0, int(prompt_tokens)) + int(completion)


async def admit(*, access: BlockAccess, request: AdmissionRequest, estimated_prompt_tokens: int) -> Admission:
    """Check the constraints and reserve quota for a call `block_access` allowed; raise GateError to refuse.

    400 policy_violation / invalid_request_error (a rule, naming it), 404 model_not_found (a
    fallback the request names that the caller may not run), 429 rate_limit_exceeded /
    insufficient_quota with Retry-After.
    """
    principal, block = access.principal, access.block
    rules: OrgRules = await rules_cache.get(principal.organization.pk)

    request_values, declared = request_rule(request)
    policy = effective_policy(org_rule=rules.org_rule, block_rule=rules.block_rules.get(block.pk, {}),
                              request_values=request_values)
    problems = check_constraints(policy=policy, request=request, prompt_tokens=estimated_prompt_tokens,
                                 protocols=request_protocols(request, declared))
    if problems:
        raise problems[0]
    policy, fallbacks = await _checked_fallbacks(policy, principal=principal, rules=rules,
                                                 from_request="fallbacks" in request_values)
    if policy.max_output_tokens is not None and getattr(request, "max_tokens", None) is None:
        # The cap is enforced by asking the backend for no more than it.
        request.max_tokens = policy.max_output_tokens

    api_key = getattr(principal, "api_key", None)
    limits = rules.limits_for(api_key.pk if api_key is not None else None)
    reservation = None
    if limits:
        if getattr(request, "max_tokens", None) is None and any(
                limit.tokens_per_minute or limit.token_budget for limit in limits):
            # Under a token limit an uncapped answer could outgrow its reservation and overshoot
            # the budget: the reservation becomes the cap.
            request.max_tokens = DEFAULT_COMPLETION_RESERVE
        try:
            reservation = await quota_store().reserve(limits, reserve_tokens(request, policy, estimated_prompt_tokens))
        except QuotaExceeded as exc:
            raise GateError(exc.message, status=429, code=exc.code, rule=exc.rule,
                            headers={"Retry-After": str(exc.retry_after)}) from exc
    return Admission(policy=policy, reservation=reservation, fallbacks=fallbacks)
