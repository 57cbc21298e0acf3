"""A persistent sandbox session: model-written Python runs in its own OS process, step after step.

    async with await SandboxSession.start(variables={"context": text},
                                          functions={"llm_query": llm_query, "done": done},
                                          namespaces={"agents": {"summarize": summarize}}) as session:
        step = await session.run("n = len(context)\\nprint(n)")
        step.output   # "200000\\n"

The interpreter is Monty (pydantic-monty): a Python subset written in Rust with no file system,
network, subprocess, environment or import of anything but its own standard modules. It runs in a
worker process of its own (a one-worker Monty pool per session, never reused by another session;
spares.py starts it ahead of time) started through jail.py's script: OS limits, then bubblewrap's
namespaces. Host functions are calls
from that process back to this one over the worker's stdin/stdout pipe protocol: each call pauses the
interpreter as a snapshot, this process runs the function and resumes the snapshot with its result.

What ends a session (SandboxKilled, with the reason, and the process is gone): the step's wall time,
the interpreter's time, heap, recursion or host-call limits, printing more than max_output_chars, any
attempt at the file system, the environment or a module Monty does not have (every OS call reaches
the host as a snapshot and is refused here), and the process dying (RLIMIT_CPU/AS, a crash). An
ordinary exception in the code (NameError, ValueError, a syntax error) only ends the step: its
traceback is the step's error and the session goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import re
import signal
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from pydantic_monty import (
    AsyncFunctionSnapshot,
    AsyncFutureSnapshot,
    AsyncMonty,
    AsyncNameLookupSnapshot,
    ClassInstance,
    MontyComplete,
    MontyCrashedError,
    MontyError,
    MontyRuntimeError,
    MontySyntaxError,
    MontyTypingError,
)

from inference.agents.sandbox import spares
from inference.agents.sandbox.jail import SandboxUnavailable, worker_command
from inference.agents.sandbox.limits import DEFAULT_LIMITS, SandboxLimits

HostFunction = Callable[..., Any] | Callable[..., Awaitable[Any]]

# Exceptions Monty raises for its own limits: uncatchable inside the sandbox, and each ends the session.
_LIMIT_ERRORS = {
    "MemoryError": "memory limit",
    "TimeoutError": "time limit",
    "RecursionError": "recursion limit",
}


class SandboxKilled(Exception):
    """The session broke a rule or a limit and its process was killed; `reason` says which."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class StepResult:
    """One code step: what it printed, the value of its last expression (None if it had none), and
    the traceback when the code raised (the session survives that)."""

    output: str = ""
    value: Any = None
    error: str | None = None
    seconds: float = 0.0


class _Namespace:
    """What `agents` is inside the sandbox: a host object whose methods are host functions. Its
    attributes are never sent; every call arrives here as a snapshot and is checked by name."""

    def __init__(self, name: str, functions: Mapping[str, HostFunction]):
        self._name = name
        for function_name, function in functions.items():
            setattr(self, function_name, function)

    def __repr__(self) -> str:
        return f"<{self._name}>"


class _Output:
    """The step's print() output, up to the limit; past it the process is killed."""

    def __init__(self, limit: int, on_overflow: Callable[[str], None]):
        self.parts: list[str] = []
        self.size = 0
        self.limit = limit
        self.on_overflow = on_overflow
        self.overflowed = False

    def __call__(self, stream: str, text: str) -> None:
        if self.overflowed:
            return
        self.size += len(text)
        if self.size > self.limit:
            self.overflowed = True
            self.on_overflow(f"output limit: the step printed more than {self.limit:,} characters")
            return
        self.parts.append(text)

    def text(self) -> str:
        return "".join(self.parts)


def _to_sandbox(value: Any, depth: int = 0) -> Any:
    """A host function's result as plain data the sandbox can hold (anything else becomes its str)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if depth > 32:
        return str(value)
    if isinstance(value, list | tuple):
        return [_to_sandbox(item, depth + 1) for item in value]
    if isinstance(value, dict):
        return {str(key): _to_sandbox(item, depth + 1) for key, item in value.items()}
    return str(value)


def _describe_os_call(name: str, args: tuple[Any, ...]) -> str:
    shown = ", ".join(repr(str(arg)) for arg in args[:2])
    if name == "import":
        return f"import refused: the sandbox has no module {shown}"
    if name.startswith("os.environ") or name == "os.getenv":
        return f"environment access refused: {name}({shown})"
    return f"file system access refused: {name}({shown})"


# `module 'os' has no attribute 'fork'`, `'int' object has no attribute '__class__'`, `name '__import__'
# is not defined`: Monty has none of these, so the code fails either way; reaching for them is an escape
# attempt, and the session ends rather than letting the code probe on.
_DUNDER = re.compile(r"'(__\w+__)'")
_OS_MODULE = re.compile(r"module '(os|sys)' has no attribute '(\w+)'")


def _escape_attempt(kind: str, message: str) -> str | None:
    if kind in ("AttributeError", "NameError") and (dunder := _DUNDER.search(message)):
        return f"introspection refused: {dunder.group(1)} is not available in the sandbox ({message})"
    if kind == "AttributeError" and (missing := _OS_MODULE.search(message)):
        return (f"refused: {missing.group(1)}.{missing.group(2)} does not exist in the sandbox "
                "(no processes, signals, files or environment)")
    return None


class SandboxSession:
    """One sandbox process and the interpreter state in it; variables persist between run() calls.
    Use `await SandboxSession.start(...)`, then `run()` each step, then `close()` (or `async with`)."""

    def __init__(self, limits: SandboxLimits, functions: Mapping[str, HostFunction],
                 namespaces: Mapping[str, Mapping[str, HostFunction]],
                 propagate: tuple[type[BaseException], ...] = ()):
        self.limits = limits
        self._propagate = propagate
        self._functions = dict(functions)
        self._namespaces = {name: ClassInstance(_Namespace(name, members), allowed_methods=set(members))
                            for name, members in namespaces.items()}
        self._namespace_members: dict[UUID, tuple[str, Mapping[str, HostFunction]]] = {
            wrapper.id: (name, namespaces[name]) for name, wrapper in self._namespaces.items()}
        self._stack = contextlib.AsyncExitStack()
        self._session: Any = None
        self.pid: int | None = None
        self.namespaced = False
        self.from_spare = False
        self.killed: str | None = None
        self._pending_kill: str | None = None
        # The process is known to be gone (and reaped by the pool): its pid may belong to another now.
        self._exited = False
        self._inputs: dict[str, Any] | None = None

    @classmethod
    async def start(cls, *, variables: Mapping[str, Any] | None = None,
                    functions: Mapping[str, HostFunction] | None = None,
                    namespaces: Mapping[str, Mapping[str, HostFunction]] | None = None,
                    limits: SandboxLimits = DEFAULT_LIMITS,
                    propagate: tuple[type[BaseException], ...] = ()) -> SandboxSession:
        """Start the process and bind `variables` (plain data: str, numbers, lists, dicts) as globals.
        `functions` become global host functions, `namespaces` objects whose methods are host
        functions (`agents.<name>(...)`). A host function may be sync or async; its result must be
        plain data (anything else arrives as its str), and an exception it raises is raised in the
        sandbox as a RuntimeError naming it, except the `propagate` types (an abort), which end the
        step, kill the session and reach run()'s caller."""
        self = cls(limits, functions or {}, namespaces or {}, propagate)
        script, self.namespaced = worker_command(limits)
        try:
            pool, spare = await spares.take(script, limits)
            try:
                self._session = await self._checkout(pool)
            except MontyError:
                if not spare:
                    raise
                # The spare's process died while it waited (an OOM kill, an operator): start one now.
                await spares.discard(pool)
                self._stack = contextlib.AsyncExitStack()
                pool, spare = await spares.take(script, limits)
                self._session = await self._checkout(pool)
            self.pid = self._session.worker_pid
            self.from_spare = spare
            await spares.replenish(script, limits)
        except MontyError as exc:
            await self.close()
            raise SandboxUnavailable(f"the sandbox process did not start: {exc}") from exc
        except BaseException:
            await self.close()
            raise
        self._inputs = {**{name: _to_sandbox(value) for name, value in (variables or {}).items()},
                        **self._namespaces}
        return self

    async def _checkout(self, pool: AsyncMonty) -> Any:
        self._stack.push_async_exit(pool.__aexit__)
        return await self._stack.enter_async_context(pool.checkout(
            limits={
                "max_feed_duration_secs": self.limits.step_cpu_time_s,
                "max_memory": self.limits.memory_bytes,
                "max_recursion_depth": self.limits.max_recursion_depth,
                "max_suspensions": self.limits.max_host_calls,
            },
            # time.sleep() in model code would only burn the step's wall time.
            os_policy={"sleep": "zero"},
        ))

    async def __aenter__(self) -> SandboxSession:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def alive(self) -> bool:
        return self.killed is None and self._session is not None

    def _kill_process(self, reason: str) -> None:
        """SIGKILL the worker (bwrap's process, whose child dies with it: --die-with-parent)."""
        if self._pending_kill is None:
            self._pending_kill = reason
        if self.pid and not self._exited:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)

    async def _die(self, reason: str) -> SandboxKilled:
        self._kill_process(reason)
        self.killed = self._pending_kill or reason
        await self.close()
        return SandboxKilled(self.killed)

    async def run(self, code: str) -> StepResult:
        """Run one step. Raises SandboxKilled when it broke a rule or a limit (the session is then
        closed) or when the session was already killed; a cancelled run() kills the process too."""
        if self.killed is not None:
            raise SandboxKilled(self.killed)
        if self._session is None:
            raise SandboxKilled("the session is closed")
        started = time.perf_counter()
        task = asyncio.ensure_future(self._drive(code))
        try:
            done, _ = await asyncio.wait({task}, timeout=self.limits.step_wall_time_s)
        except asyncio.CancelledError:
            self._kill_process("the run was cancelled")
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            self.killed = self._pending_kill
            await self.close()
            raise
        if not done:
            self._kill_process(f"wall time limit: the step ran longer than {self.limits.step_wall_time_s:g} s")
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            raise await self._die(self._pending_kill or "wall time limit")
        try:
            result = task.result()
        except BaseException:
            self._kill_process("a host call ended the step")
            self.killed = self._pending_kill
            await self.close()
            raise
        if isinstance(result, SandboxKilled):
            raise await self._die(result.reason)
        result.seconds = time.perf_counter() - started
        return result

    async def _drive(self, code: str) -> StepResult | SandboxKilled:
        output = _Output(self.limits.max_output_chars, self._kill_process)
        inputs, self._inputs = self._inputs, None
        pending: dict[int, dict[str, Any]] = {}
        try:
            snapshot = await self._session.feed_start(code, inputs=inputs or None, print_callback=output)
            while not isinstance(snapshot, MontyComplete):
                if self._pending_kill is not None:
                    return SandboxKilled(self._pending_kill)
                if isinstance(snapshot, AsyncFunctionSnapshot):
                    if snapshot.is_os_function:
                        return SandboxKilled(_describe_os_call(str(snapshot.function_name), snapshot.args))
                    answer = await self._call_host(snapshot)
                    if snapshot.allow_eager_await:
                        # `await f(...)`: the sandbox wants a future, settled at once with the answer.
                        pending[snapshot.call_id] = answer
                        snapshot = await snapshot.resume({"future": ...})
                    else:
                        snapshot = await snapshot.resume(answer)
                elif isinstance(snapshot, AsyncFutureSnapshot):
                    ready = {call: pending.pop(call) for call in snapshot.pending_call_ids if call in pending}
                    if not ready:
                        return SandboxKilled("the code awaited something that never completes")
                    snapshot = await snapshot.resume(ready)
                elif isinstance(snapshot, AsyncNameLookupSnapshot):
                    snapshot = await snapshot.resume()  # an undefined name: NameError in the sandbox
                else:  # pragma: no cover - a snapshot kind newer than this code
                    return SandboxKilled(f"unexpected sandbox event {type(snapshot).__name__}")
            value = snapshot.output
        except MontyCrashedError as exc:
            self._exited = True
            return SandboxKilled(self._pending_kill or f"the sandbox process died ({exc})")
        except MontyRuntimeError as exc:
            if self._pending_kill is not None:
                return SandboxKilled(self._pending_kill)
            kind = type(exc.exception()).__name__
            if kind in _LIMIT_ERRORS:
                return SandboxKilled(f"{_LIMIT_ERRORS[kind]}: {exc.display(format='msg')}")
            message = exc.display(format="msg")
            if kind == "RuntimeError" and "suspension" in message:
                return SandboxKilled(f"host call limit: {message}")
            if refused := _escape_attempt(kind, message):
                return SandboxKilled(refused)
            return StepResult(output=output.text(), error=exc.display())
        except (MontySyntaxError, MontyTypingError) as exc:
            return StepResult(output=output.text(), error=exc.display())
        except MontyError as exc:
            return SandboxKilled(self._pending_kill or f"sandbox error: {exc}")
        if self._pending_kill is not None:
            return SandboxKilled(self._pending_kill)
        if isinstance(value, str | list | dict | tuple) and len(shown := repr(value)) + output.size > output.limit:
            return SandboxKilled(f"output limit: the step's value and output are {len(shown) + output.size:,} "
                                 f"characters, more than {output.limit:,}")
        return StepResult(output=output.text(), value=value)

    async def _call_host(self, snapshot: AsyncFunctionSnapshot) -> dict[str, Any]:
        name = str(snapshot.function_name)
        if snapshot.object_id is not None:
            owner, members = self._namespace_members.get(snapshot.object_id, ("?", {}))
            function = members.get(name)
            if function is None:
                return {"exc_type": "AttributeError", "message": f"{owner} has no {name!r}"}
        else:
            function = self._functions.get(name)
            if function is None:
                return {"exc_type": "NameError", "message": f"name {name!r} is not defined"}
        try:
            result = function(*snapshot.args, **snapshot.kwargs)
            if inspect.isawaitable(result):
                result = await result
        except self._propagate:
            raise
        except Exception as exc:
            return {"exc_type": "RuntimeError", "message": f"{name}: {type(exc).__name__}: {exc}"}
        return {"return_value": _to_sandbox(result)}

    async def close(self) -> None:
        """End the session and its process (idempotent)."""
        self._session = None
        stack, self._stack = self._stack, contextlib.AsyncExitStack()
        with contextlib.suppress(MontyError, OSError, asyncio.TimeoutError):
            await asyncio.wait_for(stack.aclose(), timeout=10)
