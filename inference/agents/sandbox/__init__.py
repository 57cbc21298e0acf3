"""Model-written code in a separate OS process: Monty's Python subset under OS limits and bubblewrap
namespaces (docs/agents-sandbox.md)."""

from inference.agents.sandbox.jail import SandboxUnavailable, bwrap_works
from inference.agents.sandbox.limits import DEFAULT_LIMITS, SandboxLimits
from inference.agents.sandbox.session import HostFunction, SandboxKilled, SandboxSession, StepResult

__all__ = [
    "DEFAULT_LIMITS",
    "HostFunction",
    "SandboxKilled",
    "SandboxLimits",
    "SandboxSession",
    "SandboxUnavailable",
    "StepResult",
    "bwrap_works",
]
