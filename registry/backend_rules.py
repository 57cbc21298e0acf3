"""What a tenant may put in a block's backend, checked on every write before anything is stored.

A tenant's backend configuration is untrusted input (docs/security.md): it must never make the
server connect to an internal address, import a module or load a model file. Each concern has its
own module; this is the one place a block write asks them all.
"""

from __future__ import annotations

from typing import Any

from registry import egress
from registry.server_code import server_code_refusal


class BackendConfigError(ValueError):
    """A backend configuration the caller may not store; the message names the config key."""


def check_backend_config(*, backend_type: str, config: dict[str, Any], operator: bool) -> None:
    """Raise BackendConfigError for a configuration this caller may not store.

    `operator` is registry.roles.is_operator(caller): the operator may open what tenants may not.
    """
    if not isinstance(config, dict):
        raise BackendConfigError("backend.config: must be an object")
    _refuse(server_code_refusal(backend_type=backend_type, config=config, operator=operator))
    try:
        egress.check_destination(backend_type=backend_type, config=config, operator=operator)
    except egress.DestinationRefused as exc:
        raise BackendConfigError(str(exc)) from exc


def _refuse(refusal: str | None) -> None:
    if refusal is not None:
        raise BackendConfigError(refusal)
