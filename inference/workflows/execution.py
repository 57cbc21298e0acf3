"""What each node type does once a node is claimed: render its templates, call its blocks through the
gateway's pipeline, evaluate a condition. No state changes here: services.py records the outcome.

Block calls run exactly as a /v1/chat/completions request of the run's starter would: the same naming
rule, the key's allowed models, admission (quotas, policy constraints), then the policy's per-attempt
timeout, retries and fallbacks (inference.gateway.pipeline).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from inference.agents.services import AgentCallFailed, agent_call
from inference.gateway.errors import OpenAIError
from inference.gateway.pipeline import prepare
from inference.workflows import templates
from registry.principal import Principal


class NodeFailure(Exception):
    """The node cannot finish: its message is stored as the node's error."""


class NodeCancelled(Exception):
    """The run was cancelled (or failed elsewhere) while this node ran."""


def messages_for(node: dict[str, Any], context: dict[str, Any]) -> list[dict[str, Any]]:
    if "messages" in node:
        messages = templates.render(node["messages"], context)
    else:
        messages = [{"role": "user", "content": templates.render(node["prompt"], context)}]
        if "system" in node:
            messages.insert(0, {"role": "system", "content": templates.render(node["system"], context)})
    # A placeholder that is the whole content may have brought a list or an object: send text.
    return [{**m, "content": templates.as_text(m["content"])} for m in messages]


async def call_block(principal: Principal, node: dict[str, Any], messages: list[dict[str, Any]],
                     session_id: str | None = None) -> Any:
    body = {"model": node["block"], "messages": messages, **(node.get("params") or {})}
    if session_id:
        body["session_id"] = session_id  # the gateway's context window hook, as for a /v1 request
    try:
        call = await prepare(principal, body)
        reply = await call.complete()
    except OpenAIError as exc:
        raise NodeFailure(f"block '{node['block']}' answered {exc.status}: {exc.message}") from None
    text = (reply.get("choices") or [{}])[0].get("message", {}).get("content") or ""
    if node.get("output_format") == "json":
        try:
            return json.loads(text)
        except ValueError:
            raise NodeFailure(f"block '{node['block']}' did not answer with JSON: {text[:200]!r}") from None
    return text


async def run_call(principal: Principal, node: dict[str, Any], context: dict[str, Any]) -> tuple[dict, Any]:
    """(the node's recorded input, its output) for a block or optimizer node."""
    messages = messages_for(node, context)
    session_id = templates.as_text(templates.render(node["session"], context)) if "session" in node else None
    recorded = {"block": node["block"], "messages": messages, "params": node.get("params") or {},
                **({"session": session_id} if session_id else {})}
    return recorded, await call_block(principal, node, messages, session_id)


async def run_agent(principal: Principal, node: dict[str, Any], context: dict[str, Any]) -> tuple[dict, Any]:
    """An agent node: the stored agent run with its rendered input; its output is the agent's output object."""
    values = templates.render(node.get("input") or {}, context)
    recorded = {"agent": node["agent"], "input": values, **({"model": node["model"]} if "model" in node else {})}
    try:
        output = await agent_call(principal=principal, name=node["agent"], values=values, model=node.get("model"))
    except AgentCallFailed as exc:
        raise NodeFailure(f"agent '{node['agent']}' failed: {exc}") from None
    return recorded, output


async def run_map(principal: Principal, node: dict[str, Any], context: dict[str, Any]) -> tuple[dict, Any]:
    """One block call per item of `over`, at most `concurrency` at a time; the outputs in item order."""
    items = templates.render(node["over"], context)
    if not isinstance(items, list):
        raise NodeFailure(f"'over' gave {type(items).__name__}, not a list")
    limit = node.get("max_items", 100)
    if len(items) > limit:
        # Refused, never cut short: a silently truncated fan-out would look like a complete answer.
        raise NodeFailure(f"'over' gave {len(items)} items; this node allows at most {limit} (max_items)")
    gate = asyncio.Semaphore(node.get("concurrency", 4))
    requests = [messages_for(node, {**context, "item": item, "index": index}) for index, item in enumerate(items)]

    async def one(messages: list[dict[str, Any]]) -> Any:
        async with gate:
            return await call_block(principal, node, messages)

    tasks = [asyncio.ensure_future(one(m)) for m in requests]
    try:
        outputs = await asyncio.gather(*tasks)
    finally:
        for task in tasks:  # the first failure ends the node: close the other calls too
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return {"block": node["block"], "items": len(items), "concurrency": node.get("concurrency", 4)}, list(outputs)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def evaluate(test: dict[str, Any], context: dict[str, Any]) -> tuple[dict, bool]:
    left = templates.render(test["left"], context)
    right = templates.render(test.get("right"), context)
    op = test["op"]
    if op == "truthy":
        result = bool(left) and left not in ("false", "False", "0", "no")
    elif op in ("==", "!="):
        same = left == right or (_number(left) is not None and _number(left) == _number(right))
        result = same if op == "==" else not same
    elif op == "contains":
        result = (str(right).lower() in left.lower()) if isinstance(left, str) else \
            (right in left if isinstance(left, list | dict) else False)
    elif op == "in":
        result = (str(left).lower() in right.lower()) if isinstance(right, str) else \
            (left in right if isinstance(right, list | dict) else False)
    else:
        a, b = _number(left), _number(right)
        if a is None or b is None:
            raise NodeFailure(f"condition '{op}' compares numbers; got {left!r} and {right!r}")
        result = {">": a > b, ">=": a >= b, "<": a < b, "<=": a <= b}[op]
    return {"left": left, "op": op, "right": right}, result


async def watched(work: Awaitable[Any], renew: Callable[[], Awaitable[bool]], every_s: float) -> Any:
    """Run `work`, renewing the node's lease every `every_s`; when renewal fails (the run was cancelled
    or failed, or the claim was lost) cancel the work, which closes its upstream connections."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=every_s)
            if done:
                return task.result()
            if not await renew():
                raise NodeCancelled()
    finally:
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
