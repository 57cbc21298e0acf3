"""Policy rules: their validation, their precedence, and the constraint checker.

Precedence, most specific first: request > block rule > organization rule > defaults.
A request may set the execution knobs (timeout, retries, backoff, retry_on, fallbacks)
freely, but it can only tighten the limits (max input/output tokens, allowed protocols):
a caller must not lift a limit its organization set.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

from registry.tenancy.policy import GateError, Policy

MAX_TOKENS_LIMIT = 10_000_000
MAX_FALLBACKS = 10
REQUEST_POLICY_FIELD = "switchboard"
REQUEST_ONLY_KEYS = ("protocol",)
RULE_KEYS = ("timeout_s", "retries", "backoff_s", "retry_on", "fallbacks", "max_input_tokens",
             "max_output_tokens", "allowed_protocols")
# Rule fields only a stored rule sets: a request that could say `approval_required: false` would
# approve itself, so the body's `switchboard` object knows no such key.
STORED_ONLY_KEYS = ("approval_required",)
STORED_KEYS = RULE_KEYS + STORED_ONLY_KEYS
APPROVAL_DEADLINE_DEFAULT_S = 3600
APPROVAL_DEADLINE_MAX_S = 7 * 86400
APPROVER_ROLES = ("owner", "member")
MAX_APPROVER_USERS = 50


def _number(name: str, value: Any, low: float, high: float, *, integer: bool) -> float | int:
    if isinstance(value, bool) or not isinstance(value, int | float) or (integer and not isinstance(value, int)):
        raise ValueError(f"{name} must be {'an integer' if integer else 'a number'}")
    if not math.isfinite(value) or not low <= value <= high:
        raise ValueError(f"{name} must be between {low:g} and {high:g}, got {value}")
    return value


def _strings(name: str, value: Any, *, max_items: int, max_len: int = 200) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and 0 < len(v) <= max_len for v in value):
        raise ValueError(f"{name} must be a list of non-empty strings")
    if len(value) > max_items:
        raise ValueError(f"{name} may hold at most {max_items} items")
    return list(dict.fromkeys(value))


def _protocol(value: str) -> str:
    if value.count("/") != 1 or any(not part for part in value.split("/")):
        raise ValueError(f"protocol {value!r} must look like 'type/subtype' (e.g. text/plain, image/*)")
    return value.lower()


def validate_rule_values(values: dict[str, Any]) -> dict[str, Any]:
    """Checked, normalised rule fields; None values are dropped (they inherit). Raises ValueError."""
    out: dict[str, Any] = {}
    for name, value in values.items():
        if value is None:
            continue
        if name == "timeout_s":
            out[name] = float(_number(name, value, 0.1, 3600, integer=False))
        elif name == "retries":
            out[name] = int(_number(name, value, 0, 10, integer=True))
        elif name == "backoff_s":
            out[name] = float(_number(name, value, 0, 60, integer=False))
        elif name in ("max_input_tokens", "max_output_tokens"):
            out[name] = int(_number(name, value, 1, MAX_TOKENS_LIMIT, integer=True))
        elif name == "retry_on":
            if not isinstance(value, list):
                raise ValueError("retry_on must be a list of HTTP status codes")
            out[name] = sorted({int(_number("retry_on item", v, 400, 599, integer=True)) for v in value})
        elif name == "fallbacks":
            out[name] = _strings(name, value, max_items=MAX_FALLBACKS)
        elif name == "allowed_protocols":
            out[name] = [_protocol(p) for p in _strings(name, value, max_items=50, max_len=100)]
        elif name == "approval_required":
            out[name] = approval_rule(value)
        else:
            raise ValueError(f"unknown policy field {name!r}")
    return out


def approval_rule(value: Any) -> dict[str, Any] | bool:
    """`approval_required`, normalised: true is owners within an hour; false lifts an organization-wide
    rule for one block; an object names `approvers` (`{"role": "owner"|"member"}` or `{"users": [...]}`,
    the workflows' approval node's shape) and `deadline_s` (after it the request is refused)."""
    if isinstance(value, bool):
        return {"approvers": {"role": "owner"}, "deadline_s": APPROVAL_DEADLINE_DEFAULT_S} if value else False
    if not isinstance(value, dict):
        raise ValueError("approval_required must be true, false or an object {approvers, deadline_s}")
    unknown = sorted(set(value) - {"approvers", "deadline_s"})
    if unknown:
        raise ValueError(f"approval_required: unknown field(s) {', '.join(unknown)}")
    approvers = value.get("approvers", {"role": "owner"})
    if not isinstance(approvers, dict) or len(approvers) != 1 or not (
            approvers.get("role") in APPROVER_ROLES or "users" in approvers):
        raise ValueError("approval_required.approvers must be {\"role\": \"owner\"|\"member\"} or {\"users\": [...]}")
    if "users" in approvers:
        approvers = {"users": _strings("approval_required.approvers.users", approvers["users"],
                                       max_items=MAX_APPROVER_USERS, max_len=150)}
        if not approvers["users"]:
            raise ValueError("approval_required.approvers.users names nobody")
    deadline = int(_number("approval_required.deadline_s", value.get("deadline_s", APPROVAL_DEADLINE_DEFAULT_S),
                           1, APPROVAL_DEADLINE_MAX_S, integer=True))
    return {"approvers": approvers, "deadline_s": deadline}


def request_rule(request) -> tuple[dict[str, Any], list[str] | None]:
    """The request-level rule from the body's `switchboard` object, taken out of the request
    so it is never forwarded upstream. Returns (rule values, declared protocols or None)."""
    extra = getattr(request, "extra", None)
    if not isinstance(extra, dict) or REQUEST_POLICY_FIELD not in extra:
        return {}, None
    raw = extra.pop(REQUEST_POLICY_FIELD)
    if raw is None:
        return {}, None
    if not isinstance(raw, dict):
        raise GateError(f"'{REQUEST_POLICY_FIELD}' must be an object", status=400,
                        code="invalid_request_error", rule=REQUEST_POLICY_FIELD)
    unknown = sorted(set(raw) - set(RULE_KEYS) - set(REQUEST_ONLY_KEYS))
    if unknown:
        raise GateError(f"unknown field(s) in '{REQUEST_POLICY_FIELD}': {', '.join(unknown)}", status=400,
                        code="invalid_request_error", rule=REQUEST_POLICY_FIELD)
    declared = raw.get("protocol")
    protocols: list[str] | None = None
    try:
        if declared is not None:
            items = [declared] if isinstance(declared, str) else declared
            protocols = [_protocol(p) for p in _strings("protocol", items, max_items=10, max_len=100)]
        values = validate_rule_values({k: v for k, v in raw.items() if k in RULE_KEYS})
    except ValueError as exc:
        raise GateError(f"{REQUEST_POLICY_FIELD}: {exc}", status=400, code="invalid_request_error",
                        rule=REQUEST_POLICY_FIELD) from exc
    return values, protocols


def _tighter_min(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


def effective_policy(*, org_rule: dict, block_rule: dict, request_values: dict) -> Policy:
    merged: dict[str, Any] = {}
    merged.update(org_rule)
    merged.update(block_rule)
    for name in ("timeout_s", "retries", "backoff_s", "retry_on", "fallbacks"):
        if name in request_values:
            merged[name] = request_values[name]
    for name in ("max_input_tokens", "max_output_tokens"):
        merged[name] = _tighter_min(merged.get(name), request_values.get(name))
    if "allowed_protocols" in request_values:
        wanted = request_values["allowed_protocols"]
        current = merged.get("allowed_protocols")
        merged["allowed_protocols"] = wanted if not current else [p for p in wanted if protocol_allowed(p, current)]
        if not merged["allowed_protocols"]:
            merged["allowed_protocols"] = ["none/none"]  # the request asked for nothing the org allows
    policy = Policy()
    fields = {k: v for k, v in merged.items() if v is not None}
    if not fields.get("approval_required"):  # false (lifted for this block) or absent
        fields.pop("approval_required", None)
    for name in ("retry_on", "fallbacks", "allowed_protocols"):
        if name in fields:
            fields[name] = tuple(fields[name])
    return replace(policy, **fields)


def protocol_allowed(protocol: str, allowed: list[str] | tuple[str, ...]) -> bool:
    kind = protocol.split("/")[0]
    return any(a in (protocol, "*/*") or (a.endswith("/*") and a.split("/")[0] == kind) for a in allowed)


def request_protocols(request, declared: list[str] | None) -> list[str]:
    """What the request sends: declared in `switchboard.protocol`, else read off its messages."""
    if declared:
        return declared
    found = ["text/plain"]
    for message in getattr(request, "messages", None) or []:
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, list):
            continue
        for part in content:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "image_url" and "image/*" not in found:
                found.append("image/*")
            elif kind in ("input_audio", "audio") and "audio/*" not in found:
                found.append("audio/*")
            elif kind == "file" and "application/octet-stream" not in found:
                found.append("application/octet-stream")
    return found


def violation(rule: str, message: str) -> GateError:
    return GateError(message, status=400, code="policy_violation", rule=rule)


def check_constraints(*, policy: Policy, request, prompt_tokens: int, protocols: list[str]) -> list[GateError]:
    """Every violated rule, in a fixed order (the first is what admit raises)."""
    problems: list[GateError] = []
    if policy.max_input_tokens is not None and prompt_tokens > policy.max_input_tokens:
        problems.append(violation("max_input_tokens",
                                  f"max_input_tokens {policy.max_input_tokens} exceeded: {prompt_tokens}"))
    wanted = getattr(request, "max_tokens", None)
    if policy.max_output_tokens is not None and wanted is not None and wanted > policy.max_output_tokens:
        problems.append(violation("max_output_tokens",
                                  f"max_output_tokens {policy.max_output_tokens} exceeded: max_tokens is {wanted}"))
    if policy.allowed_protocols:
        for protocol in protocols:
            if not protocol_allowed(protocol, policy.allowed_protocols):
                problems.append(violation(
                    "allowed_protocols",
                    f"protocol {protocol} is not in allowed_protocols ({', '.join(policy.allowed_protocols)})"))
    return problems
