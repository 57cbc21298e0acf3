"""RLM mode (Recursive Language Model): read contexts far larger than a model's window by writing code.

The fields named in `context_fields` never enter a prompt: they are loaded as variables into a
persistent sandbox session (inference/agents/sandbox). Each turn an Actor model writes Python; it runs
in the sandbox and `Action N:` (the code) / `Result:` (what it printed, its last value or its error, cut
to `max_runtime_chars`) go into an action log that the next turn sees. Inside the sandbox the code has
`llm_query(query, context=None)` and the batched `llm_query([{"query": ..., "context": ...}, ...])`
(also spelled `llmQuery`), the agent's tools as globals, its child agents as `agents.<name>(...)`,
`print`, and `done()` / `final(...)`. The loop ends when the code calls done() or final(), when the
Actor writes no code, or after `max_turns`; a Responder then writes the outputs from the action log.

Models are reached through one narrow callable, so the loop runs against a scripted fake as well as
against the gateway (inference/agents/agent.py wires it to an `AI` client):

    async def complete(messages: list[dict], options: dict) -> str
"""

from __future__ import annotations

import asyncio
import inspect
import json
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from inference.agents.abort import AbortSignal, AgentAborted
from inference.agents.sandbox import (
    DEFAULT_LIMITS,
    HostFunction,
    SandboxKilled,
    SandboxLimits,
    SandboxSession,
)

Complete = Callable[[list[dict[str, Any]], dict[str, Any]], Awaitable[str]]
ActorCallback = Callable[[dict[str, Any]], Any]
# The Responder: (inputs without the context fields, the action log, options) -> the outputs.
Respond = Callable[[dict[str, Any], str, dict[str, Any]], Awaitable[Mapping[str, Any]]]

_CODE_BLOCK = re.compile(r"```[ \t]*(?:python|py)?[ \t]*\n(.*?)```", re.DOTALL | re.IGNORECASE)


# What `import` finds inside the sandbox (Monty 1.4.0's standard modules an Actor would reach for).
SANDBOX_MODULES = ("json", "re", "math", "collections", "itertools", "functools", "datetime", "random",
                   "bisect", "base64", "hashlib", "decimal", "copy", "csv", "unicodedata", "typing", "dataclasses")


class RLMConfigError(ValueError):
    """An `rlm={...}` option is unknown or out of range (the message names it)."""


@dataclass
class RLMConfig:
    """`agent(..., rlm={...})`: ax's AxRLMConfig in Python's spelling."""

    context_fields: list[str]
    max_llm_calls: int = 50
    max_runtime_chars: int = 5000
    max_batched_llm_query_concurrency: int = 8
    sub_model: str | None = None
    max_turns: int = 10
    actor_fields: list[str] = field(default_factory=list)
    actor_callback: ActorCallback | None = None
    # The sandbox's limits (docs/agents-sandbox.md): time per step, memory, output.
    sandbox: SandboxLimits = DEFAULT_LIMITS

    @classmethod
    def from_options(cls, options: Mapping[str, Any] | RLMConfig) -> RLMConfig:
        if isinstance(options, RLMConfig):
            return options
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise RLMConfigError(f"unknown rlm option {unknown[0]!r} (known: {', '.join(sorted(known))})")
        if "context_fields" not in options:
            raise RLMConfigError("rlm needs context_fields: the input fields to load into the sandbox")
        config = cls(**options)
        config.context_fields = list(config.context_fields)
        config.actor_fields = list(config.actor_fields)
        if not config.context_fields or not all(isinstance(name, str) and name for name in config.context_fields):
            raise RLMConfigError("rlm context_fields must be a non-empty list of input field names")
        for name in ("max_llm_calls", "max_runtime_chars", "max_batched_llm_query_concurrency", "max_turns"):
            value = getattr(config, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise RLMConfigError(f"rlm {name} must be a positive integer, not {value!r}")
        if config.actor_callback is not None and not callable(config.actor_callback):
            raise RLMConfigError("rlm actor_callback must be callable")
        return config


@dataclass
class ActorTurn:
    """One Actor turn: the code it wrote, the result the sandbox gave, and its actor fields."""

    number: int
    code: str
    result: str
    fields: dict[str, str] = field(default_factory=dict)


@dataclass
class RLMTrace:
    """What the Actor loop leaves for the Responder (and for a run's record)."""

    turns: list[ActorTurn] = field(default_factory=list)
    action_log: str = ""
    actor_fields: dict[str, str] = field(default_factory=dict)
    llm_calls: int = 0
    # "done", "final", "no_code" or "max_turns"
    ended_by: str = ""
    final: dict[str, Any] | None = None
    sandbox_kills: list[str] = field(default_factory=list)


def cut(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, saying how much was cut."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}\n...[{len(text) - limit:,} more characters cut; max_runtime_chars is {limit:,}]"


def extract_code(reply: str) -> str:
    """The Python in the Actor's reply: its fenced blocks, joined; "" when it wrote none."""
    return "\n".join(block.strip("\n") for block in _CODE_BLOCK.findall(reply)).strip()


def extract_fields(reply: str, names: Sequence[str]) -> dict[str, str]:
    """`name: value` lines for the actor fields, outside the code (a value runs to the next field)."""
    text = _CODE_BLOCK.sub("", reply)
    found: dict[str, str] = {}
    if not names:
        return found
    pattern = re.compile(rf"^[ \t]*\**({'|'.join(re.escape(name) for name in names)})\**[ \t]*:[ \t]*(.*)$",
                         re.MULTILINE)
    matches = list(pattern.finditer(text))
    for index, match in enumerate(matches):
        end = matches[index + 1].start() if index + 1 < len(matches) else len(text)
        found[match.group(1)] = (match.group(2) + text[match.end():end]).strip()
    return found


def describe_value(name: str, value: Any) -> str:
    """How a context variable is shown to the Actor: its type and size, never its content."""
    if isinstance(value, str):
        return f"- `{name}`: str, {len(value):,} characters"
    if isinstance(value, list):
        return f"- `{name}`: list, {len(value):,} items"
    if isinstance(value, dict):
        keys = ", ".join(list(map(str, value))[:10])
        return f"- `{name}`: dict, {len(value):,} keys ({keys}{', ...' if len(value) > 10 else ''})"
    return f"- `{name}`: {type(value).__name__}"


@dataclass
class Tool:
    """A function the sandbox code may call as a global: `name(**arguments)` or `name({...})`."""

    name: str
    description: str
    function: HostFunction
    parameters: dict[str, Any] = field(default_factory=dict)


def _call_with_arguments(function: HostFunction) -> HostFunction:
    """Tools take keyword arguments; models also write `tool({"a": 1})` as ax's runtime does."""

    async def call(*args: Any, **kwargs: Any) -> Any:
        if len(args) == 1 and isinstance(args[0], dict) and not kwargs:
            args, kwargs = (), dict(args[0])
        if inspect.iscoroutinefunction(function):
            return await function(*args, **kwargs)
        result = await asyncio.to_thread(function, *args, **kwargs)
        return await result if inspect.isawaitable(result) else result

    return call


class RLM:
    """One RLM forward: the Actor loop over a sandbox session, then the Responder.

    `complete` reaches the models; `respond(inputs, action_log, options)` writes the outputs (the
    agent's signature program, minus the actor fields); option precedence is `options` (the
    constructor's) < `actor_options` / `responder_options` < `call_options` (forward's).
    """

    def __init__(self, config: RLMConfig, *, complete: Complete, description: str = "",
                 output_fields: Sequence[str] = (), tools: Sequence[Tool] = (),
                 agents: Sequence[Tool] = (), options: Mapping[str, Any] | None = None,
                 actor_options: Mapping[str, Any] | None = None,
                 responder_options: Mapping[str, Any] | None = None,
                 abort: AbortSignal | None = None):
        self.config = config
        self.complete = complete
        self.description = description
        self.output_fields = list(output_fields)
        self.tools = list(tools)
        self.agents = list(agents)
        self.options = dict(options or {})
        self.actor_options = dict(actor_options or {})
        self.responder_options = dict(responder_options or {})
        self.abort = abort or AbortSignal()
        self._llm_calls = 0
        self._llm_lock = asyncio.Lock()
        # The OS process of each sandbox session this forward started (a killed one is replaced).
        self.sandbox_pids: list[int] = []

    # -- options -------------------------------------------------------------------------------

    def actor_call_options(self, call_options: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return {**self.options, **self.actor_options, **dict(call_options or {})}

    def responder_call_options(self, call_options: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return {**self.options, **self.responder_options, **dict(call_options or {})}

    def llm_query_options(self, call_options: Mapping[str, Any] | None = None) -> dict[str, Any]:
        merged = {**self.options, **dict(call_options or {})}
        if self.config.sub_model:
            merged["model"] = self.config.sub_model
        return merged

    # -- llm_query -----------------------------------------------------------------------------

    async def _take_call(self) -> bool:
        async with self._llm_lock:
            if self._llm_calls >= self.config.max_llm_calls:
                return False
            self._llm_calls += 1
            return True

    def _budget_error(self) -> str:
        return (f"[ERROR] max_llm_calls reached: all {self.config.max_llm_calls} sub-model calls are used; "
                "finish with the data gathered so far")

    async def _sub_query(self, query: Any, context: Any, options: dict[str, Any]) -> str:
        if not await self._take_call():
            return self._budget_error()
        limit = self.config.max_runtime_chars
        context_text = "" if context is None else context if isinstance(context, str) else json.dumps(
            context, default=str)
        prompt = str(query) if not context_text else f"Context:\n{cut(context_text, limit)}\n\nQuery: {query}"
        messages = [
            {"role": "system", "content": "Answer the query. Use only the context when one is given. Be brief."},
            {"role": "user", "content": prompt},
        ]
        return await self.abort.run(self.complete(messages, options))

    def llm_query_function(self, call_options: Mapping[str, Any] | None = None) -> HostFunction:
        options = self.llm_query_options(call_options)
        semaphore = asyncio.Semaphore(self.config.max_batched_llm_query_concurrency)

        async def one(item: Any) -> str:
            if isinstance(item, dict):
                query, context = item.get("query", ""), item.get("context")
            else:
                query, context = item, None
            async with semaphore:
                try:
                    return await self._sub_query(query, context, options)
                except AgentAborted:
                    raise
                except Exception as exc:
                    return f"[ERROR] {type(exc).__name__}: {exc}"

        async def llm_query(query: Any, context: Any = None) -> str | list[str]:
            if isinstance(query, list):
                return list(await asyncio.gather(*(one(item) for item in query)))
            answer = await self._sub_query(query, context, options)
            return answer

        return llm_query

    # -- the Actor loop ------------------------------------------------------------------------

    def actor_system_prompt(self, variables: Mapping[str, Any]) -> str:
        config = self.config
        lines = [
            "You are the Actor of an RLM (recursive language model). You never answer the task directly: "
            "you write Python code that explores the context variables below, and a Responder writes the "
            "final answer from your action log.",
            "",
            f"Task: {self.description}" if self.description else "",
            f"The final answer will have these fields: {', '.join(self.output_fields)}." if self.output_fields else "",
            "",
            "Context variables (already loaded; they persist between your turns, as do the variables you set):",
            *[describe_value(name, value) for name, value in variables.items()],
            "",
            "Functions (synchronous: call them without await):",
            "- `llm_query(query, context=None) -> str`: ask a sub-model about a piece of text "
            f"(context is cut to {config.max_runtime_chars:,} characters).",
            "- `llm_query([{\"query\": ..., \"context\": ...}, ...]) -> list[str]`: many at once, "
            f"{config.max_batched_llm_query_concurrency} in parallel; a failed item is \"[ERROR] ...\". "
            f"At most {config.max_llm_calls} sub-model calls in all.",
            "- `print(...)`: what you print is what you see in the Result of the action.",
            "- `done()`: call it when you have gathered enough; `final(value)` records a value and ends too.",
        ]
        for tool in self.tools:
            lines.append(f"- `{tool.name}(**arguments)`: {tool.description} Parameters: "
                         f"{json.dumps(tool.parameters.get('properties', {}))}")
        for agent in self.agents:
            lines.append(f"- `agents.{agent.name}(**arguments)`: {agent.description} Parameters: "
                         f"{json.dumps(agent.parameters.get('properties', {}))}")
        lines += [
            "",
            f"The language is a Python subset (Monty): the only modules are {', '.join(SANDBOX_MODULES)}; "
            "there are no files, no network, no environment, and no dunder attributes (an import of another "
            "module or a try at any of those ends the session). Use slicing, str methods and re to find the "
            "parts that matter, "
            "then llm_query on those parts. Results longer than "
            f"{config.max_runtime_chars:,} characters are cut: print summaries, not whole texts.",
            "",
            "Reply with exactly one ```python code block per turn.",
        ]
        if config.actor_fields:
            lines.append("Before the code block, write these fields, one per line as `name: value`: "
                         + ", ".join(config.actor_fields) + ".")
        return "\n".join(line for line in lines if line is not None)

    def actor_user_prompt(self, inputs: Mapping[str, Any], action_log: str) -> str:
        shown = "\n".join(f"{name}: {value if isinstance(value, str) else json.dumps(value, default=str)}"
                          for name, value in inputs.items())
        return (f"{shown}\n\n" if shown else "") + "Action log:\n" + (action_log or "(no actions yet)")

    def _format_result(self, step: Any) -> str:
        parts = []
        if step.output:
            parts.append(step.output.rstrip("\n"))
        if step.error:
            parts.append(step.error.rstrip("\n"))
        elif step.value is not None:
            parts.append(repr(step.value))
        return "\n".join(parts) if parts else "(no output)"

    async def _start_session(self, variables: Mapping[str, Any], functions: Mapping[str, HostFunction],
                             namespaces: Mapping[str, Mapping[str, HostFunction]]) -> SandboxSession:
        session = await self.abort.run(SandboxSession.start(
            variables=variables, functions=functions, namespaces=namespaces, limits=self.config.sandbox,
            propagate=(AgentAborted,)))
        if session.pid:
            self.sandbox_pids.append(session.pid)
        return session

    async def act(self, values: Mapping[str, Any], call_options: Mapping[str, Any] | None = None) -> RLMTrace:
        """The Actor loop alone: code turns until done()/final(), no code, or max_turns."""
        config = self.config
        missing = [name for name in config.context_fields if name not in values]
        if missing:
            raise RLMConfigError(f"context field {missing[0]!r} is not among the input values")
        variables = {name: values[name] for name in config.context_fields}
        inputs = {name: value for name, value in values.items() if name not in config.context_fields}
        trace = RLMTrace()
        ending: dict[str, Any] = {}

        def done() -> None:
            ending.setdefault("by", "done")

        def final(*args: Any, **kwargs: Any) -> None:
            ending["by"] = "final"
            trace.final = {**({"value": args[0] if len(args) == 1 else list(args)} if args else {}), **kwargs}

        llm_query = self.llm_query_function(call_options)
        functions: dict[str, HostFunction] = {
            **{tool.name: _call_with_arguments(tool.function) for tool in self.tools},
            "llm_query": llm_query, "llmQuery": llm_query, "done": done, "final": final,
        }
        namespaces = {"agents": {agent.name: _call_with_arguments(agent.function) for agent in self.agents}}
        options = self.actor_call_options(call_options)
        system = self.actor_system_prompt(variables)
        session = await self._start_session(variables, functions, namespaces)
        try:
            for number in range(1, config.max_turns + 1):
                self.abort.check()
                messages = [{"role": "system", "content": system},
                            {"role": "user", "content": self.actor_user_prompt(inputs, trace.action_log)}]
                reply = await self.abort.run(self.complete(messages, options))
                code = extract_code(reply)
                actor_values = extract_fields(reply, config.actor_fields)
                if actor_values:
                    trace.actor_fields.update(actor_values)
                if not code:
                    trace.ended_by = "no_code"
                    await self._callback(number, code, "", actor_values)
                    break
                if not session.alive:
                    session = await self._start_session(variables, functions, namespaces)
                try:
                    step = await self.abort.run(session.run(code))
                    result = self._format_result(step)
                except SandboxKilled as killed:
                    trace.sandbox_kills.append(killed.reason)
                    result = (f"[sandbox killed: {killed.reason}] A new session starts with the next action: "
                              "the context variables are loaded again, every other variable is gone.")
                result = cut(result, config.max_runtime_chars)
                turn = ActorTurn(number=number, code=code, result=result, fields=actor_values)
                trace.turns.append(turn)
                trace.action_log += self._format_turn(turn)
                await self._callback(number, code, result, actor_values)
                if "by" in ending:
                    trace.ended_by = ending["by"]
                    break
            else:
                trace.ended_by = "max_turns"
        finally:
            await session.close()
            trace.llm_calls = self._llm_calls
        if trace.final is not None:
            trace.action_log += f"Final: {json.dumps(trace.final, default=str)}\n"
        return trace

    def _format_turn(self, turn: ActorTurn) -> str:
        fields_text = "".join(f"{name}: {value}\n" for name, value in turn.fields.items())
        return f"{fields_text}Action {turn.number}:\n{turn.code}\nResult:\n{turn.result}\n\n"

    async def _callback(self, number: int, code: str, result: str, actor_values: dict[str, str]) -> None:
        if self.config.actor_callback is None:
            return
        outcome = self.config.actor_callback({"turn": number, "python_code": code, "result": result,
                                              **actor_values})
        if inspect.isawaitable(outcome):
            await outcome

    async def forward(self, values: Mapping[str, Any], respond: Respond,
                      call_options: Mapping[str, Any] | None = None) -> tuple[dict[str, Any], RLMTrace]:
        """The Actor loop, then the Responder: `respond(inputs, action_log, options)` returns the
        outputs the Actor does not write; the actor fields of the last turns are merged over them."""
        trace = await self.act(values, call_options)
        self.abort.check()
        inputs = {name: value for name, value in values.items() if name not in self.config.context_fields}
        outputs = dict(await respond(inputs, trace.action_log, self.responder_call_options(call_options)))
        outputs.update({name: value for name, value in trace.actor_fields.items()
                        if name in self.config.actor_fields})
        return outputs, trace
