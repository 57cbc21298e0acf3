"""`admit`: access, constraints, then quota, in that order (the types are in policy.py).

Nothing here touches the database on the hot path: the organization's rules come from the
rules cache, and the quota check is one Redis script call.
"""

from __future__ import annotations

from dataclasses import replace

from channels.db import database_sync_to_async

from registry.models import Block
from registry.principal import Principal
from registry.selectors import block_key_names, block_resolve, blocks_visible_to
from registry.tenancy.constraints import check_constraints, effective_policy, request_protocols, request_rule
from registry.tenancy.policy import Admission, AdmissionRequest, GateError, Policy
from registry.tenancy.quota import QuotaExceeded, quota_store
from registry.tenancy.rules import OrgRules, block_is_visible, rules_cache

# Tokens reserved for the answer when neither the request nor a policy caps it.
DEFAULT_COMPLETION_RESERVE = 256


def not_found(model: str) -> GateError:
    # Word for word what a missing model gets: a foreign private block must look missing.
    return GateError(f"The model '{model}' does not exist or you do not have access to it.",
                     status=404, code="model_not_found", rule="visibility")


def _visible_fallbacks_sync(organization, references: tuple[str, ...]) -> dict[str, tuple[str, ...] | None]:
    """Each reference's block under the gateway's naming rule (ids only), as the names a key may list."""
    visible = blocks_visible_to(organization).filter(enabled=True)
    found = {}
    for reference in references:
        block = block_resolve(organization=organization, reference=reference, queryset=visible, names=False)
        found[reference] = None if block is None else block_key_names(block, organization=organization)
    return found


async def _checked_fallbacks(policy: Policy, *, principal, rules: OrgRules, from_request: bool) -> Policy:
    if not policy.fallbacks:
        return policy
    if from_request:
        visible = await database_sync_to_async(_visible_fallbacks_sync)(principal.organization, policy.fallbacks)
    else:
        visible = {reference: rules.usable_fallbacks.get(reference) for reference in policy.fallbacks}
    kept = []
    for reference in policy.fallbacks:
        names = visible[reference]
        usable = names is not None and principal.allows_names(names)
        if not usable and from_request:
            raise not_found(reference)
        if usable:
            kept.append(reference)
    # A stored rule's fallback that is no longer visible is dropped, never revealed.
    return replace(policy, fallbacks=tuple(kept))


def reserve_tokens(request: AdmissionRequest, policy: Policy, prompt_tokens: int) -> int:
    completion = getattr(request, "max_tokens", None) or policy.max_output_tokens or DEFAULT_COMPLETION_RESERVE
    return max(0, int(prompt_tokens)) + int(completion)


async def admit(*, principal: Principal, block: Block, request: AdmissionRequest,
                estimated_prompt_tokens: int) -> Admission:
    """Check access and constraints and reserve quota; raise GateError to refuse.

    404 model_not_found (not visible or disabled), 403 model_not_allowed (the key's
    allowed_models), 400 policy_violation / invalid_request_error (a rule, naming it),
    429 rate_limit_exceeded / insufficient_quota with Retry-After.
    """
    organization_id = principal.organization.pk
    rules: OrgRules = await rules_cache.get(organization_id)
    if not block_is_visible(block, organization_id, rules) or not block.enabled:
        raise not_found(getattr(request, "model", None) or block.block_id)
    if not principal.allows_block(block):
        raise GateError(f"This API key is not allowed to use the model '{block.block_id}'.", status=403,
                        code="model_not_allowed", rule="allowed_models")

    request_values, declared = request_rule(request)
    policy = effective_policy(org_rule=rules.org_rule, block_rule=rules.block_rules.get(block.pk, {}),
                              request_values=request_values)
    problems = check_constraints(policy=policy, request=request, prompt_tokens=estimated_prompt_tokens,
                                 protocols=request_protocols(request, declared))
    if problems:
        raise problems[0]
    policy = await _checked_fallbacks(policy, principal=principal, rules=rules, from_request="fallbacks" in request_values)
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
    return Admission(policy=policy, reservation=reservation)
