"""The contract between the gateway and tenancy: who may run what, under which rules.

The gateway calls `admit` once per request before any backend call, then `settle` with
the real usage when it is done (or `release` when nothing ran). `admit` answers with the
block's effective Policy, which the gateway's call loop executes (timeouts, retries,
fallbacks). The rules live in registry.tenancy (admission.py: access, constraints,
quota; constraints.py: precedence request > block > organization > defaults).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.conf import settings


@dataclass(frozen=True)
class Policy:
    timeout_s: float = field(default_factory=lambda: settings.UPSTREAM_TIMEOUT_S)
    retries: int = 0
    backoff_s: float = 0.2
    retry_on: tuple[int, ...] = (429, 500, 502, 503, 504)
    # Block ids tried in order after the primary has failed (and used up its retries).
    fallbacks: tuple[str, ...] = ()
    max_input_tokens: int | None = None
    max_output_tokens: int | None = None
    allowed_protocols: tuple[str, ...] = ()


class GateError(Exception):
    """A request refused before inference: answered as an OpenAI-style error."""

    def __init__(self, message: str, *, status: int, code: str, rule: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.rule = rule
        self.headers = headers or {}


@dataclass
class Admission:
    policy: Policy
    # A registry.tenancy.quota.Reservation, or None when no quota applies.
    reservation: Any = None

    async def settle(self, *, prompt_tokens: int, completion_tokens: int) -> None:
        """Record real usage against the reservation (charges or refunds the difference; once)."""
        if self.reservation is not None:
            await self.reservation.settle(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)

    async def release(self) -> None:
        """Give the reserved tokens back: nothing ran (the request itself still counts)."""
        if self.reservation is not None:
            await self.reservation.release()


async def admit(*, principal, block, request, estimated_prompt_tokens: int) -> Admission:
    """Check access and constraints and reserve quota; raise GateError to refuse.

    404 model_not_found (not visible or disabled), 403 model_not_allowed (the key's
    allowed_models), 400 policy_violation / invalid_request_error (a rule, naming it),
    429 rate_limit_exceeded / insufficient_quota with Retry-After.
    """
    from registry.tenancy.admission import admission_for

    return await admission_for(principal=principal, block=block, request=request,
                               estimated_prompt_tokens=estimated_prompt_tokens)
