"""A stored agent definition made into a live `Agent`, with the server's tools it chose: the runtime's
operators (inference/runtime: echo, split_text, calculator, http_request, called as the run's starter),
other blocks (a tool that sends a prompt to that block through the gateway, as the run's starter) and
other agents (child agents, built the same way). Every check a definition must pass is here, so that saving one
and running one agree."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from inference.agents.agent import Agent, AgentConfigError, _check_options, rlm_config, tool_name
from inference.agents.ai import AI
from inference.agents.models import AgentDefinition
from inference.agents.signature import SignatureError, parse
from inference.agents.tools import Tool
from inference.planner.routing import is_auto
from inference.runtime.operators import call_operator
from inference.runtime.schema import request_schema
from registry.models import Block, Organization
from registry.principal import Principal
from registry.selectors import block_resolve

NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{4,63}")
# What a stored definition's options may set (the rest of agent()'s options are the server's).
OPTION_KEYS = ("temperature", "max_tokens", "max_steps", "max_retries", "native_tools", "json_output")
MAX_STEPS_LIMIT = 50
MAX_CHILD_DEPTH = 3
MAX_TOOLS = 32


def check_options(options: Any) -> list[str]:
    if not isinstance(options, dict):
        return ["options: an object"]
    errors = [f"options.{k}: unknown (known: {', '.join(OPTION_KEYS)})" for k in options if k not in OPTION_KEYS]
    merged = {"max_steps": 25, "max_retries": 3, **options}
    try:
        _check_options(merged)
    except AgentConfigError as exc:
        errors.append(f"options: {exc}")
    if isinstance(merged.get("max_steps"), int) and merged["max_steps"] > MAX_STEPS_LIMIT:
        errors.append(f"options.max_steps: at most {MAX_STEPS_LIMIT} on this server")
    tokens = options.get("max_tokens")
    if tokens is not None and (not isinstance(tokens, int) or isinstance(tokens, bool) or tokens < 1):
        errors.append("options.max_tokens: a whole number of at least 1")
    for flag in ("native_tools", "json_output"):
        if options.get(flag) is not None and not isinstance(options[flag], bool):
            errors.append(f"options.{flag}: true or false")
    return errors


def _model_found(organization: Organization, reference: str) -> bool:
    return is_auto(reference) or block_resolve(organization=organization, reference=reference,
                                               prefer_kind=Block.LLM) is not None


def check_definition(*, organization: Organization, data: dict[str, Any], name: str) -> tuple[list[str], list[str]]:
    """(errors of form a schema cannot state: 422, references to blocks or agents not found: 404)."""
    errors: list[str] = []
    missing: list[str] = []
    if not NAME.fullmatch(name):
        errors.append("name: 5-64 letters, digits, _ or -, starting with a letter")
    try:
        signature = parse(data["signature"])
    except SignatureError as exc:
        signature = None
        errors.append(f"signature: {exc}")
    if signature is not None:
        try:
            rlm_config(signature, data.get("rlm"), data.get("actor_options"), data.get("responder_options"))
        except AgentConfigError as exc:
            errors.append(str(exc))
    try:
        Agent("q -> a", name=name if len(name) >= 5 else "agent", description=data["description"],
              definition=data.get("definition") or None)
    except AgentConfigError as exc:
        errors.append(str(exc))
    errors.extend(check_options(data.get("options") or {}))
    if not _model_found(organization, data["model"]):
        missing.append(f"model: no block '{data['model']}' that this organization may use")
    for label, reference in (("rlm.sub_model", (data.get("rlm") or {}).get("sub_model")),
                             ("actor_options.model", (data.get("actor_options") or {}).get("model")),
                             ("responder_options.model", (data.get("responder_options") or {}).get("model"))):
        if reference is not None and not _model_found(organization, reference):
            missing.append(f"{label}: no block '{reference}' that this organization may use")
    names: list[str] = []
    if len(data.get("tools") or []) > MAX_TOOLS:
        errors.append(f"tools: at most {MAX_TOOLS}")
    for i, spec in enumerate(data.get("tools") or []):
        if spec["type"] == "operator":
            if "operator" not in spec or "block" in spec or "agent" in spec:
                errors.append(f'tools[{i}]: an operator tool is {{"type": "operator", "operator": ...}}')
            else:
                names.append(spec.get("name") or spec["operator"])
        elif spec["type"] == "block" and ("block" not in spec or "agent" in spec or "operator" in spec):
            errors.append(f'tools[{i}]: a block tool is {{"type": "block", "block": ...}}')
        elif spec["type"] == "agent" and ("agent" not in spec or set(spec) - {"type", "agent"}):
            errors.append(f'tools[{i}]: an agent tool is {{"type": "agent", "agent": <name>}}')
        elif spec["type"] == "block":
            if not _model_found(organization, spec["block"]) or is_auto(spec["block"]):
                missing.append(f"tools[{i}]: no block '{spec['block']}' that this organization may use")
            names.append(spec.get("name") or tool_name(spec["block"]))
        else:
            if spec["agent"] == name:
                errors.append(f"tools[{i}]: an agent cannot be its own tool")
            elif not AgentDefinition.objects.filter(organization=organization, name=spec["agent"]).exists():
                missing.append(f"tools[{i}]: no agent '{spec['agent']}' in this organization")
            names.append(tool_name(spec["agent"]))
    if len(names) != len(set(names)):
        errors.append("tools: two tools share a name (give a block tool its own `name`)")
    return errors, missing


OPERATOR_DESCRIPTIONS = {
    "echo": "Returns its input unchanged",
    "split_text": "Splits a text into chunks of chunk_size characters overlapping by chunk_overlap",
    "calculator": "Evaluates an arithmetic expression exactly",
    "http_request": "Makes an HTTP request (only where the organization has opened it) and returns the answer",
}


def operator_parameters(name: str) -> dict[str, Any]:
    """The operator's input schema, as the runtime's own request schema states it."""
    for option in request_schema()["oneOf"]:
        properties = option.get("properties") or {}
        if (properties.get("function") or {}).get("enum") == [name]:
            schema = dict(properties.get("input") or {})
            return {"type": "object", **schema}
    return {"type": "object"}


def operator_tool(spec: dict[str, Any], principal: Principal) -> Tool:
    """A runtime operator as a tool, called as `principal` (its refusals go back to the model as errors)."""
    name = spec["operator"]

    async def call(**inputs: Any) -> Any:
        bodies = [body async for body in call_operator(principal, name, inputs)]
        return bodies[-1] if bodies else None

    return Tool(name=spec.get("name") or name, description=spec.get("description") or OPERATOR_DESCRIPTIONS.get(
        name, f"The runtime operator {name}"), func=call, parameters=operator_parameters(name))


def block_tool(spec: dict[str, Any], ai: AI, usage: dict[str, int]) -> Tool:
    """A block as a tool: its `prompt` argument goes to the block as one user message; its answer comes back."""
    block = spec["block"]

    async def call(prompt: str) -> str:
        result = await ai.chat([{"role": "user", "content": str(prompt)}], model=block)
        usage["calls"] = usage.get("calls", 0) + 1
        for key in ("prompt_tokens", "completion_tokens", "total_tokens"):
            usage[key] = usage.get(key, 0) + int(result.usage.get(key) or 0)
        return result.content

    return Tool(name=spec.get("name") or tool_name(block),
                description=spec.get("description") or f"Sends a prompt to the model '{block}' and returns its answer",
                func=call, parameters={"type": "object", "properties": {"prompt": {"type": "string"}},
                                       "required": ["prompt"]})


def build_agent(definition: AgentDefinition, *, principal: Principal, ai_for: Callable[[str], AI],
                usage: dict[str, int], model: str | None = None, depth: int = 0, seen: tuple[str, ...] = ()) -> Agent:
    """The live Agent of a stored definition (synchronous: it reads child definitions). `ai_for(model)`:
    the model client for a model reference; each agent talks to its own default brain (`model` for the
    top one, when a run names another)."""
    ai = ai_for(model or definition.model)
    if depth > MAX_CHILD_DEPTH:
        raise AgentConfigError(f"child agents nest deeper than {MAX_CHILD_DEPTH} levels")
    if definition.name in seen:
        raise AgentConfigError(f"the agent '{definition.name}' calls itself through {' -> '.join(seen)}")
    functions: list[Tool] = []
    children: list[Agent] = []
    for spec in definition.tools or []:
        if spec.get("type") == "operator":
            functions.append(operator_tool(spec, principal))
            continue
        if spec.get("type") == "block":
            functions.append(block_tool(spec, ai, usage))
            continue
        child = AgentDefinition.objects.filter(organization_id=definition.organization_id, name=spec.get("agent")).first()
        if child is None:
            raise AgentConfigError(f"the child agent '{spec.get('agent')}' was deleted")
        children.append(build_agent(child, principal=principal, ai_for=ai_for, usage=usage, depth=depth + 1,
                                    seen=(*seen, definition.name)))
    options = {k: v for k, v in (definition.options or {}).items() if k in OPTION_KEYS}
    return Agent(definition.signature, name=definition.name, description=definition.description,
                 definition=definition.definition or None, functions=functions, agents=children,
                 ai=ai, rlm=definition.rlm or None, actor_options=definition.actor_options or None,
                 responder_options=definition.responder_options or None, **options)
