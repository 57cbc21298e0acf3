"""The contract between the gateway and tenancy: who may run what, under which rules.

The gateway checks access once per request (`registry.tenancy.access.block_access`), hands the
BlockAccess to `registry.tenancy.admission.admit` before any backend call, then calls `settle`
with the real usage when it is done (or `release` when nothing ran). `admit` answers with the
block's effective Policy, which the gateway's call loop executes (timeouts, retries, fallbacks).
The types live here, below access.py, admission.py (constraints, quota) and constraints.py
(precedence request > block > organization > defaults), which use them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from django.conf import settings

from registry.models import Block
from registry.tenancy.quota import Reservation


class AdmissionRequest(Protocol):
    """What admission reads off a request (the gateway's ChatRequest, the estimator's stand-in).

    `max_tokens` is written back when a policy caps the answer; `extra` holds the body's
    unknown fields, the `switchboard` request rule among them.
    """

    model: str
    messages: list[dict[str, Any]]
    max_tokens: int | None
    extra: dict[str, Any]


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
    # {"approvers": {"role": ...} | {"users": [...]}, "deadline_s": n}: each request waits for a person's
    # decision (inference/workflows/holds.py); None when no rule asks for one.
    approval_required: dict[str, Any] | None = None


class GateError(Exception):
    """A request refused before inference: answered as an OpenAI-style error (`param`: the
    request field it is about, where one is)."""

    def __init__(self, message: str, *, status: int, code: str, rule: str | None = None,
                 headers: dict[str, str] | None = None, param: str | None = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.rule = rule
        self.headers = headers or {}
        self.param = param


@dataclass
class Admission:
    policy: Policy
    # None when no quota applies.
    reservation: Reservation | None = None
    # The blocks policy.fallbacks name, in order, each one the caller may run (access checked by admit).
    fallbacks: tuple[Block, ...] = ()

    async def settle(self, *, prompt_tokens: int, completion_tokens: int) -> None:
        """Record real usage against the reservation (charges or refunds the difference; once)."""
        if self.reservation is not None:
            await self.reservation.settle(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)

    async def release(self) -> None:
        """Give the reserved tokens back: nothing ran (the request itself still counts)."""
        if self.reservation is not None:
            await self.reservation.release()

