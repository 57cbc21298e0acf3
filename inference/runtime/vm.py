"""The VM: one runtime request in, the bodies of its packets out. Every transport (the WebSocket, the
HTTP endpoint, the in-process Python Runtime) runs exactly this, for one principal.

Requests (docs/runtime.md has every frame):
    {"type": "call_function", "function": "echo", "input": {...}}
    {"type": "define_component", "component_type": "language_model", "component_name": "lm0", "attrs": {...}}
    {"type": "delete_component", "component_name": "lm0"}
    {"type": "call_method", "component_name": "lm0", "method": "infer", "input": {...}}
A refusal raises VMFailure. Another organization's components do not exist for the caller (404).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

from inference.runtime import selectors, services
from inference.runtime.components import component_type
from inference.runtime.errors import VMFailure, bad_input, not_found
from inference.runtime.models import Component
from inference.runtime.operators import call_operator
from registry import jsonsafe
from registry.asyncdb import in_db_thread
from registry.models import Membership
from registry.principal import Principal
from registry.roles import caller_role

REQUEST_TYPES = ("call_function", "define_component", "delete_component", "call_method")
COMPONENT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


def _name(request: dict[str, Any]) -> str:
    name = request.get("component_name")
    if not isinstance(name, str) or not COMPONENT_NAME.match(name):
        raise bad_input("'component_name' must be 1 to 100 letters, digits, '_', '.' or '-', starting with a letter "
                        "or digit.", "component_name")
    return name


def _acting_user(principal: Principal) -> Any:
    if principal.user is not None:
        return principal.user
    return principal.api_key.created_by if principal.api_key is not None else None


@in_db_thread
def _component(principal: Principal, name: str) -> Component:
    component = selectors.component_get(organization=principal.organization, name=name)
    if component is None:
        raise not_found(f"No component named {name!r}.", "component_name", "component_not_found")
    return component


@in_db_thread
def _define(principal: Principal, name: str, type_name: str, attrs: dict[str, Any]) -> None:
    services.component_define(organization=principal.organization, name=name, type=type_name, attrs=attrs,
                              created_by=_acting_user(principal))


@in_db_thread
def _delete(principal: Principal, name: str) -> None:
    component = selectors.component_get(organization=principal.organization, name=name)
    if component is None:
        raise not_found(f"No component named {name!r}.", "component_name", "component_not_found")
    if caller_role(principal) != Membership.OWNER:
        user = _acting_user(principal)
        if user is None or component.created_by_id != user.pk:
            raise VMFailure(403, "Only an owner may delete a component another member defined.",
                            code="permission_denied", param="component_name")
    services.component_delete(component=component)


async def execute(principal: Principal, request: dict[str, Any]) -> AsyncIterator[Any]:
    kind = request.get("type")
    if kind == "call_function":
        async for body in call_operator(principal, request.get("function"), request.get("input", {})):
            yield body
    elif kind == "call_method":
        component = await _component(principal, _name(request))
        method = component_type(component.type).method(request.get("method"))
        async for body in method(principal, component, request.get("input", {})):
            yield body
    elif kind == "define_component":
        name = _name(request)
        kind_of = component_type(request.get("component_type"))
        attrs = request.get("attrs", {})
        if not isinstance(attrs, dict):
            raise bad_input("'attrs' must be an object.", "attrs", "invalid_type")
        try:
            # The attributes are kept in a jsonb column, which cannot hold NUL (a DataError, a 500, on the
            # insert): refused before the type looks at them (a model name is a database lookup too).
            jsonsafe.check_value(attrs, refuse_nul=True)
        except jsonsafe.UnsafeJSON as exc:
            where = f"attrs.{exc.path}" if exc.path not in ("", "body") else "attrs"
            raise bad_input(f"'{where}': {exc.message.removeprefix(f'{exc.path}: ')}", where) from None
        await _define(principal, name, kind_of.name, await kind_of.prepare(principal, attrs))
    elif kind == "delete_component":
        await _delete(principal, _name(request))
    else:
        raise bad_input(f"Unknown request type {kind!r}; use one of {', '.join(REQUEST_TYPES)} (or cancel, auth on "
                        "the socket).", "type", "unknown_type")
