"""`agent(signature, name=..., description=..., ...)`: a program that answers a typed signature by calling
a model, its tools and its child agents, step by step, until the answer fits the signature.

    research = agent("question:string -> answer:string, sources:string[]", name="researcher",
                     description="Answers questions from the web search tool", functions=[search])
    result = await research.forward(ai, {"question": "..."}, temperature=0)
    async for piece in research.streaming_forward(ai, {"question": "..."}): print(piece.delta)
    research.stop()   # from any thread or task: every call in flight is aborted (AgentAborted)

Each step sends the conversation; an answer with tool calls runs them (their results, or their
errors, go back to the model) and takes another step; an answer that does not fit the signature gets
a repair message naming its errors, at most `max_retries` times, then AgentOutputError. The output
format is JSON through `response_format` json_schema, and the tools native `tools`, where the block
takes them; a block that refuses either (AIError.unsupported) gets the field-per-line format and the
prompt protocol instead (inference/agents/tools.py). Options: constructor < per-call.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import re
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from typing import Any

from inference.agents.abort import AbortSignal, AgentAborted
from inference.agents.ai import AI, AIError, ChatResult, merge_tool_calls
from inference.agents.rlm import RLM, RLMConfig, RLMConfigError
from inference.agents.rlm import Tool as SandboxTool
from inference.agents.sandbox import SandboxUnavailable
from inference.agents.signature import (
    Field,
    OutputErrors,
    Signature,
    SignatureError,
    as_signature,
    check_object,
    parse_json_answer,
    parse_text_answer,
    partial_json,
    split_lines,
)
from inference.agents.tools import Tool, as_tool, protocol_calls, protocol_instructions, result_text, run_tool

# Chat options an agent passes through to the model (the rest are the agent's own).
CHAT_OPTIONS = ("model", "temperature", "max_tokens", "top_p", "seed", "stop", "presence_penalty",
                "frequency_penalty")
AGENT_OPTIONS = ("max_steps", "max_retries", "stream", "native_tools", "json_output", "abort")
MIN_NAME, MIN_DESCRIPTION, MIN_DEFINITION = 5, 20, 100


class AgentError(Exception):
    """An agent could not produce its output."""


class AgentConfigError(AgentError, ValueError):
    """An agent, or a call's options or input values, that cannot be used."""


class AgentOutputError(AgentError):
    """The model's answers never fitted the signature: `errors` of the last one, `raw` its text."""

    def __init__(self, errors: list[str], raw: str):
        super().__init__("the answer did not fit the signature after the repair retries: " + "; ".join(errors))
        self.errors = errors
        self.raw = raw


class AgentStepsExceeded(AgentError):
    """max_steps model calls were made without a final answer (the model kept calling tools)."""


@dataclass
class AgentEvent:
    """What a run did, in order: `step` (a model call starts), `delta` (partial outputs), `tool_call`,
    `tool_result`, `retry` (the answer did not fit; the partial outputs start over), `done` (the output)."""

    type: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class AgentDelta:
    """One piece of a streamed answer: `delta` the text each field grew by, `values` the partial outputs
    so far; the last piece has `done` set and `values` the typed output. `attempt` counts the repair
    retries before it: the pieces of an earlier attempt were of an answer that was thrown away."""

    delta: dict[str, Any]
    values: dict[str, Any]
    done: bool = False
    attempt: int = 0


def tool_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", name)[:64]


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


def _field_line(f_: Field) -> str:
    extra = ", optional" if f_.optional else ""
    return f"- {f_.title} (`{f_.name}`, {f_.type.label()}{extra})" + (f": {f_.description}" if f_.description else "")


class Agent:
    def __init__(self, signature: str | Signature, *, name: str, description: str, definition: str | None = None,
                 functions: list[Tool | dict] | tuple = (), agents: list[Agent] | tuple = (), max_steps: int = 25,
                 max_retries: int = 3, temperature: float | None = None, ai: AI | None = None,
                 rlm: dict[str, Any] | RLMConfig | None = None, actor_options: dict[str, Any] | None = None,
                 responder_options: dict[str, Any] | None = None, **options: Any):
        try:
            self.signature = as_signature(signature)
        except SignatureError as exc:
            raise AgentConfigError(f"bad signature: {exc}") from None
        if not isinstance(name, str) or len(name.strip()) < MIN_NAME:
            raise AgentConfigError(f"an agent's name must be at least {MIN_NAME} characters")
        if not isinstance(description, str) or len(description.strip()) < MIN_DESCRIPTION:
            raise AgentConfigError(f"an agent's description must be at least {MIN_DESCRIPTION} characters")
        if definition is not None and (not isinstance(definition, str) or len(definition.strip()) < MIN_DEFINITION):
            raise AgentConfigError(f"an agent's definition, when given, must be at least {MIN_DEFINITION} characters")
        self.name = name
        self.description = description
        self.definition = definition
        self.functions = [as_tool(t) for t in functions]
        self.agents = list(agents)
        for child in self.agents:
            if not isinstance(child, Agent):
                raise AgentConfigError(f"agents=[...] takes agents, not {type(child).__name__}")
            if child is self:
                raise AgentConfigError("an agent cannot be its own child")
        names = [t.name for t in self.functions] + [tool_name(c.name) for c in self.agents]
        if len(names) != len(set(names)):
            raise AgentConfigError(f"two tools or child agents share a name: {', '.join(names)}")
        unknown = set(options) - set(CHAT_OPTIONS) - set(AGENT_OPTIONS)
        if unknown:
            raise AgentConfigError(f"unknown agent options: {', '.join(sorted(unknown))}")
        self.ai = ai
        self.options = {"max_steps": max_steps, "max_retries": max_retries, "temperature": temperature, **options}
        _check_options(self.options)
        # The signals of the forwards in flight; stop() may read them from another thread.
        self._active: set[AbortSignal] = set()
        self._active_lock = threading.Lock()
        self.rlm, self.actor_options, self.responder_options = rlm_config(
            self.signature, rlm, actor_options, responder_options)

    def stop(self, reason: str = "the agent was stopped") -> None:
        """Abort every call of this agent in flight (and of the child agents it called). Thread-safe."""
        with self._active_lock:
            signals = list(self._active)
        for signal in signals:
            signal.abort(reason)

    async def forward(self, ai: AI | None = None, values: dict[str, Any] | None = None, **options: Any) -> dict[str, Any]:
        async for event in self.events(ai, values, **options):
            if event.type == "done":
                return event.data["output"]
        raise AgentError("the run ended without an output")  # events() always ends with done or raises

    async def streaming_forward(self, ai: AI | None = None, values: dict[str, Any] | None = None,
                                **options: Any) -> AsyncIterator[AgentDelta]:
        attempt = 0
        async for event in self.events(ai, values, stream=True, **options):
            if event.type == "delta":
                yield AgentDelta(delta=event.data["delta"], values=event.data["values"], attempt=attempt)
            elif event.type == "retry":
                attempt += 1
            elif event.type == "done":
                yield AgentDelta(delta={}, values=event.data["output"], done=True, attempt=attempt)

    def forward_sync(self, ai: AI | None = None, values: dict[str, Any] | None = None, **options: Any) -> dict:
        """forward() for code with no event loop (a script, a thread; stop() may come from another thread)."""
        return asyncio.run(self.forward(ai, values, **options))

    def as_tool(self, ai: AI, signal: AbortSignal | None, usage: dict[str, int] | None) -> Tool:
        """This agent as a parent sees it: a tool taking its input fields."""

        async def call(**arguments: Any) -> dict[str, Any]:
            return await self.forward(self.ai or ai, arguments, abort=signal, _usage=usage)

        return Tool(name=tool_name(self.name), description=self.description, func=call,
                    parameters=self.signature.input_schema())

    # -- the loop ------------------------------------------------------------------------------------

    async def events(self, ai: AI | None = None, values: dict[str, Any] | None = None,
                     **options: Any) -> AsyncIterator[AgentEvent]:
        usage: dict[str, int] | None = options.pop("_usage", None)
        opts = {**self.options, **{k: v for k, v in options.items() if v is not None}}
        unknown = set(options) - set(CHAT_OPTIONS) - set(AGENT_OPTIONS)
        if unknown:
            raise AgentConfigError(f"unknown options: {', '.join(sorted(unknown))}")
        _check_options(opts)
        model = ai or self.ai
        if model is None:
            raise AgentConfigError("no model client: pass ai= to agent() or to forward()")
        inputs = self.check_inputs(values)
        usage = usage if usage is not None else {}
        signal = AbortSignal(opts.get("abort"))
        with self._active_lock:
            self._active.add(signal)
        try:
            if self.rlm is not None:
                call_chat = {k: options[k] for k in CHAT_OPTIONS if options.get(k) is not None}
                loop = self._rlm_loop(model, inputs, opts, call_chat, signal, usage)
            else:
                loop = self._loop(model, inputs, opts, signal, usage)
            async for event in loop:
                yield event
        finally:
            with self._active_lock:
                self._active.discard(signal)
            signal.release()

    def check_inputs(self, values: dict[str, Any] | None) -> dict[str, Any]:
        """The input values typed by the signature; AgentConfigError naming each problem."""
        if not isinstance(values, dict):
            raise AgentConfigError("the input values are a dict of the signature's input fields")
        unknown = set(values) - {f_.name for f_ in self.signature.inputs}
        if unknown:
            raise AgentConfigError(f"unknown input fields: {', '.join(sorted(unknown))}")
        try:
            return check_object(self.signature.inputs, values)
        except OutputErrors as exc:
            raise AgentConfigError("bad input values: " + "; ".join(exc.errors)) from None

    def _system(self, *, json_output: bool, tools: list[Tool], native: bool) -> str:
        sig = self.signature
        parts = [self.definition or self.description]
        if sig.description:
            parts.append(sig.description)
        parts.append("Input fields:\n" + "\n".join(map(_field_line, sig.inputs)))
        parts.append("Output fields:\n" + "\n".join(map(_field_line, sig.outputs)))
        if json_output:
            parts.append("Answer with one JSON object whose keys are the output fields' names, and nothing else. "
                         f"Its JSON schema: {json.dumps(sig.output_schema())}")
        else:
            lines = "\n".join(f"{f_.title}: <{f_.type.label()}>" for f_ in sig.outputs)
            parts.append("Answer with each output field on its own line, in this order, label first:\n" + lines +
                         "\nWrite lists, objects and json values as JSON.")
        if tools and not native:
            parts.append(protocol_instructions(tools))
        return "\n\n".join(parts)

    def _user(self, inputs: dict[str, Any]) -> str:
        return "\n".join(f"{f_.title}: {_text(inputs[f_.name])}" for f_ in self.signature.inputs if f_.name in inputs)

    async def _loop(self, ai: AI, inputs: dict[str, Any], opts: dict[str, Any], signal: AbortSignal,
                    usage: dict[str, int]) -> AsyncIterator[AgentEvent]:
        tools = self.functions + [child.as_tool(ai, signal, usage) for child in self.agents]
        by_name = {t.name: t for t in tools}
        native = bool(tools) and opts.get("native_tools") is not False
        json_output = opts.get("json_output") is not False and not (tools and not native)
        messages = [{"role": "system", "content": self._system(json_output=json_output, tools=tools, native=native)},
                    {"role": "user", "content": self._user(inputs)}]
        chat = {k: opts[k] for k in CHAT_OPTIONS if opts.get(k) is not None}
        retries = 0
        step = 0
        while step < opts["max_steps"]:
            signal.check()
            body = dict(chat)
            if tools and native:
                body["tools"] = [t.openai() for t in tools]
            if json_output:
                body["response_format"] = {"type": "json_schema",
                                           "json_schema": {"name": "output", "schema": self.signature.output_schema()}}
            yield AgentEvent("step", {"step": step + 1, "native_tools": native, "json_output": json_output})
            try:
                if opts.get("stream"):
                    result = ChatResult()
                    async for event in self._streamed(ai, messages, body, signal, json_output, result):
                        yield event
                else:
                    result = await ai.chat(messages, abort=signal, **body)
            except AIError as exc:
                if not exc.unsupported or not (native or json_output):
                    raise
                # The block refused native tools or JSON output: the prompt protocol and field-per-line.
                if native:
                    native = False
                    json_output = False
                else:
                    json_output = False
                messages[0] = {"role": "system",
                               "content": self._system(json_output=json_output, tools=tools, native=native)}
                yield AgentEvent("fallback", {"native_tools": native, "json_output": json_output,
                                              "reason": exc.message})
                continue
            step += 1
            _add_usage(usage, result.usage)
            calls = result.tool_calls if native else (protocol_calls(result.content) if tools else [])
            if calls:
                if native:
                    messages.append({"role": "assistant", "content": result.content or None, "tool_calls": calls})
                else:
                    messages.append({"role": "assistant", "content": result.content})
                for call in calls:
                    name = call["function"]["name"]
                    arguments = call["function"].get("arguments") or "{}"
                    yield AgentEvent("tool_call", {"step": step, "id": call.get("id"), "name": name,
                                                   "arguments": arguments})
                    text, failed = await signal.run(run_tool(by_name, name, arguments))
                    yield AgentEvent("tool_result", {"step": step, "id": call.get("id"), "name": name,
                                                     "result": text, "error": failed})
                    if native:
                        messages.append({"role": "tool", "tool_call_id": call.get("id") or name, "content": text})
                    else:
                        messages.append({"role": "user", "content": f"Function Result ({name}): {text}"})
                continue
            try:
                output = self._parse(result.content, json_output)
            except OutputErrors as exc:
                retries += 1
                if retries > opts["max_retries"]:
                    raise AgentOutputError(exc.errors, result.content) from None
                yield AgentEvent("retry", {"step": step, "errors": exc.errors, "raw": result.content})
                messages.append({"role": "assistant", "content": result.content})
                messages.append({"role": "user", "content": "Your answer did not fit the output fields:\n"
                                 + "\n".join(f"- {e}" for e in exc.errors)
                                 + "\nAnswer again, correcting these errors, in the format asked for."})
                continue
            yield AgentEvent("done", {"output": output, "usage": dict(usage), "steps": step})
            return
        raise AgentStepsExceeded(f"no final answer after max_steps={opts['max_steps']} model calls")

    # -- RLM mode (docs/agents-sandbox.md) ------------------------------------------------------------

    async def _rlm_loop(self, ai: AI, inputs: dict[str, Any], opts: dict[str, Any], call_chat: dict[str, Any],
                        signal: AbortSignal, usage: dict[str, int]) -> AsyncIterator[AgentEvent]:
        """The Actor's turns in the sandbox (an `actor_turn` event each), then the Responder: this agent's
        own loop over a signature of the non-context inputs and the action log, to the outputs the Actor
        does not write."""
        config = self.rlm
        assert config is not None

        async def complete(messages: list[dict[str, Any]], options: dict[str, Any]) -> str:
            result = await ai.chat(messages, abort=signal, **{k: v for k, v in options.items() if k in CHAT_OPTIONS})
            _add_usage(usage, result.usage)
            return result.content

        turns: asyncio.Queue[AgentEvent] = asyncio.Queue()

        async def on_turn(turn: dict[str, Any]) -> None:
            # The Actor's model call is a step of the run, like the Responder's.
            turns.put_nowait(AgentEvent("step", {"step": turn["turn"], "actor": True}))
            turns.put_nowait(AgentEvent("actor_turn", dict(turn)))
            if config.actor_callback is not None:
                outcome = config.actor_callback(turn)
                if inspect.isawaitable(outcome):
                    await outcome

        def sandboxed(tool: Tool) -> SandboxTool:
            """The tool as a sandbox global whose calls are recorded as the run's tool calls."""

            async def call(**arguments: Any) -> Any:
                turns.put_nowait(AgentEvent("tool_call", {"name": tool.name, "arguments": _text(arguments),
                                                          "sandbox": True}))
                try:
                    result = await tool.call(arguments)
                except Exception as exc:
                    turns.put_nowait(AgentEvent("tool_result", {"name": tool.name, "error": True, "sandbox": True,
                                                                "result": f"{type(exc).__name__}: {exc}"}))
                    raise
                turns.put_nowait(AgentEvent("tool_result", {"name": tool.name, "error": False, "sandbox": True,
                                                            "result": result_text(result)}))
                return result

            # Inside the sandbox a name is a Python identifier: `fact-finder` is called as fact_finder.
            return SandboxTool(name=tool.name.replace("-", "_"), description=tool.description, function=call,
                               parameters=tool.parameters)

        runner = RLM(replace(config, actor_callback=on_turn), complete=complete,
                     description="\n\n".join(filter(None, [self.definition or self.description,
                                                            self.signature.description])),
                     output_fields=[f_.name for f_ in self.signature.outputs],
                     tools=[sandboxed(t) for t in self.functions],
                     agents=[sandboxed(child.as_tool(ai, signal, usage)) for child in self.agents],
                     options={k: self.options[k] for k in CHAT_OPTIONS if self.options.get(k) is not None},
                     actor_options=self.actor_options, responder_options=self.responder_options, abort=signal)
        acting = asyncio.ensure_future(runner.act(inputs, call_chat))
        try:
            while True:
                waiting = asyncio.ensure_future(turns.get())
                await asyncio.wait({acting, waiting}, return_when=asyncio.FIRST_COMPLETED)
                if waiting.done():
                    yield waiting.result()
                    continue
                waiting.cancel()
                while not turns.empty():
                    yield turns.get_nowait()
                break
            trace = acting.result()
        except SandboxUnavailable as exc:
            raise AgentError(f"RLM mode cannot run here: {exc}") from None
        finally:
            if not acting.done():
                acting.cancel()
                await asyncio.gather(acting, return_exceptions=True)
        yield AgentEvent("actor_done", {"ended_by": trace.ended_by, "turns": len(trace.turns),
                                        "llm_calls": trace.llm_calls, "sandbox_kills": trace.sandbox_kills})
        actor_outputs = tuple(f_ for f_ in self.signature.outputs if f_.name in config.actor_fields)
        try:
            from_actor = check_object(actor_outputs, trace.actor_fields, from_text=True)
        except OutputErrors as exc:
            raise AgentOutputError(["the Actor's " + e for e in exc.errors], trace.action_log) from None
        responder = Agent(_responder_signature(self.signature, config), name=self.name,
                          description=self.description, definition=self.definition)
        values = {k: v for k, v in inputs.items() if k not in config.context_fields}
        values["action_log"] = trace.action_log or "(the Actor took no action)"
        responder_opts = {**opts, **runner.responder_call_options(call_chat)}
        async for event in responder._loop(ai, values, responder_opts, signal, usage):
            if event.type == "done":
                event = AgentEvent("done", {**event.data, "output": {**event.data["output"], **from_actor},
                                            "rlm": {"ended_by": trace.ended_by, "turns": len(trace.turns),
                                                    "llm_calls": trace.llm_calls}})
            yield event

    def _parse(self, text: str, json_output: bool) -> dict[str, Any]:
        if not json_output:
            return parse_text_answer(self.signature, text)
        try:
            return parse_json_answer(self.signature, text)
        except OutputErrors:
            if "{" in text:
                raise
            return parse_text_answer(self.signature, text)  # a model that ignored the JSON instruction

    async def _streamed(self, ai: AI, messages: list[dict], body: dict[str, Any], signal: AbortSignal,
                        json_output: bool, result: ChatResult) -> AsyncIterator[AgentEvent]:
        """Stream one model call into `result`, yielding the partial outputs as they grow."""
        shown: dict[str, str] = {}
        async for chunk in ai.stream(messages, abort=signal, **body):
            if chunk.usage:
                result.usage = chunk.usage
            if chunk.finish_reason:
                result.finish_reason = chunk.finish_reason
            if chunk.tool_calls:
                merge_tool_calls(result.tool_calls, chunk.tool_calls)
            if not chunk.content:
                continue
            result.content += chunk.content
            if result.tool_calls:
                continue
            values = self._partial(result.content, json_output)
            delta = {}
            for name, value in values.items():
                if not isinstance(value, str):
                    continue
                before = shown.get(name, "")
                if value != before:
                    delta[name] = value[len(before):] if value.startswith(before) else value
                    shown[name] = value
            if delta:
                yield AgentEvent("delta", {"delta": delta, "values": dict(values)})

    def _partial(self, text: str, json_output: bool) -> dict[str, Any]:
        names = {f_.name for f_ in self.signature.outputs}
        if json_output and "{" in text:
            return {k: v for k, v in (partial_json(text) or {}).items() if k in names}
        last = text.rsplit("\n", 1)
        if len(last) == 2 and ":" not in last[1]:
            text = last[0]  # a line still arriving may be the start of the next field's label
        values = split_lines(self.signature.outputs, text)
        if not values and len(self.signature.outputs) == 1 and not json_output:
            values = {self.signature.outputs[0].name: text.strip()}
        return values


def rlm_config(signature: Signature, rlm: dict[str, Any] | RLMConfig | None, actor_options: dict[str, Any] | None,
               responder_options: dict[str, Any] | None) -> tuple[RLMConfig | None, dict[str, Any], dict[str, Any]]:
    """agent()'s checks of rlm=, actor_options= and responder_options= against the signature (a stored
    definition is checked by the same function): AgentConfigError naming the option."""
    if rlm is None:
        if actor_options or responder_options:
            raise AgentConfigError("actor_options and responder_options are for RLM mode (rlm={...})")
        return None, {}, {}
    if not isinstance(rlm, dict | RLMConfig):
        raise AgentConfigError("rlm takes a dict of RLM options")
    try:
        config = RLMConfig.from_options(rlm)
    except (RLMConfigError, TypeError) as exc:
        raise AgentConfigError(str(exc)) from None
    inputs = [f_.name for f_ in signature.inputs]
    outputs = [f_.name for f_ in signature.outputs]
    for name in config.context_fields:
        if name not in inputs:
            raise AgentConfigError(f"rlm context field {name!r} is not an input field ({', '.join(inputs)})")
    for name in config.actor_fields:
        if name not in outputs:
            raise AgentConfigError(f"rlm actor field {name!r} is not an output field ({', '.join(outputs)})")
    if set(outputs) <= set(config.actor_fields):
        raise AgentConfigError("rlm actor_fields leave no output for the Responder")
    if "action_log" in inputs:
        raise AgentConfigError("an RLM agent's input field may not be named action_log (the Responder's input)")
    chosen = []
    for label, given in (("actor_options", actor_options), ("responder_options", responder_options)):
        given = dict(given or {})
        unknown = set(given) - set(CHAT_OPTIONS)
        if unknown:
            raise AgentConfigError(f"unknown {label}: {', '.join(sorted(unknown))} (they take {', '.join(CHAT_OPTIONS)})")
        chosen.append(given)
    return config, chosen[0], chosen[1]


def _responder_signature(signature: Signature, config: RLMConfig) -> Signature:
    """The Responder's: the inputs but the context fields, the action log, and the outputs the Actor does
    not write."""
    return Signature(
        inputs=(*(f_ for f_ in signature.inputs if f_.name not in config.context_fields),
                Field("action_log", description="The Actor's code and what each action returned")),
        outputs=tuple(f_ for f_ in signature.outputs if f_.name not in config.actor_fields),
        description=signature.description)


def _add_usage(total: dict[str, int], usage: dict[str, Any] | None) -> None:
    total["calls"] = total.get("calls", 0) + 1
    for key in ("prompt_tokens", "completion_tokens", "total_tokens"):
        total[key] = total.get(key, 0) + int((usage or {}).get(key) or 0)


def _check_options(opts: dict[str, Any]) -> None:
    steps, retries, temperature = opts.get("max_steps"), opts.get("max_retries"), opts.get("temperature")
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise AgentConfigError("max_steps must be a whole number of at least 1")
    if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
        raise AgentConfigError("max_retries must be a whole number of at least 0")
    if temperature is not None and (not isinstance(temperature, int | float) or isinstance(temperature, bool)
                                    or not 0 <= temperature <= 2):
        raise AgentConfigError("temperature must be a number from 0 to 2")


def agent(signature: str | Signature, **options: Any) -> Agent:
    """ax's `agent(signature, {name, description, ...})` in Python's spelling."""
    return Agent(signature, **options)


__all__ = ["Agent", "AgentAborted", "AgentConfigError", "AgentDelta", "AgentError", "AgentEvent",
           "AgentOutputError", "AgentStepsExceeded", "agent"]
