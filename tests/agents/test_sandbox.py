"""The sandbox: model-written code runs in a process of its own under OS limits and bubblewrap's
namespaces, keeps its variables between steps, calls host functions over the pipe, and every escape
attempt (files, imports, introspection, sockets, fork, loops, memory, recursion, output) is contained:
the session is killed and the caller is told why."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from inference.agents.sandbox import SandboxKilled, SandboxLimits, SandboxSession, bwrap_works, spares
from inference.agents.sandbox.jail import monty_binary

pytestmark = pytest.mark.slow

# Namespaces are required here: `make test` installs bubblewrap (.ci/services.sh), so a machine where it
# does not work fails these tests instead of passing them with less isolation.
STRICT = SandboxLimits(namespaces="required", step_wall_time_s=5, step_cpu_time_s=1, memory_bytes=64 * 2**20,
                       max_output_chars=100_000)


async def start(**kwargs) -> SandboxSession:
    kwargs.setdefault("limits", STRICT)
    return await SandboxSession.start(**kwargs)


async def killed_reason(code: str, **kwargs) -> str:
    session = await start(**kwargs)
    with pytest.raises(SandboxKilled) as caught:
        await session.run(code)
    assert not session.alive
    # A killed session stays killed, with the same reason, for every later step.
    with pytest.raises(SandboxKilled) as again:
        await session.run("1 + 1")
    assert again.value.reason == caught.value.reason
    return caught.value.reason


def read(path: str) -> str:
    return Path(path).read_text()


def escaped_file_exists() -> bool:
    return Path("/tmp/sandbox-escape").exists()


def gone(pid: int) -> bool:
    """The process has exited (reaped, or a zombie waiting to be)."""
    return not Path(f"/proc/{pid}").exists() or "zombie" in read(f"/proc/{pid}/status")


def interpreter_view(pid: int) -> dict:
    """What the interpreter process (bwrap's grandchild) sees: its namespaces, its root, its environment."""
    interpreter = descendants(pid)[-1]
    root = Path(f"/proc/{interpreter}/root")
    return {
        "net": os.readlink(f"/proc/{interpreter}/ns/net"), "pid": os.readlink(f"/proc/{interpreter}/ns/pid"),
        "etc": (root / "etc/passwd").exists(), "proc": (root / "proc/self").exists(),
        "project": (root / Path.cwd().relative_to("/")).exists(),
        "environ": Path(f"/proc/{interpreter}/environ").read_bytes(),
    }


def program_and_environment(pid: int) -> tuple[str, bytes]:
    """The program a process runs and the environment it was started with."""
    return os.path.realpath(f"/proc/{pid}/exe"), Path(f"/proc/{pid}/environ").read_bytes()


def monty_path() -> str:
    return os.path.realpath(monty_binary())


def ticks_since_boot(pid: int | None = None) -> float:
    """When the process started (or, without a pid, now), in clock ticks since boot."""
    if pid is None:
        return float(read("/proc/uptime").split()[0]) * os.sysconf("SC_CLK_TCK")
    return int(read(f"/proc/{pid}/stat").rsplit(")", 1)[1].split()[19])


def descendants(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            found += [int(child), *descendants(int(child))]
    return found


async def test_variables_persist_between_steps_and_the_last_value_and_prints_come_back():
    async with await start(variables={"context": "abc" * 1000, "items": [1, 2, 3]}) as session:
        first = await session.run("n = len(context)\nprint('length', n)\ntotal = sum(items)")
        assert first.output == "length 3000\n" and first.value is None and first.error is None
        second = await session.run("n + total")
        assert second.value == 3006


async def test_an_ordinary_exception_is_the_steps_error_and_the_session_goes_on():
    async with await start() as session:
        failed = await session.run("x = 2\nraise ValueError('no good')")
        assert "ValueError: no good" in failed.error
        syntax = await session.run("def broken(:")
        assert "SyntaxError" in syntax.error
        assert (await session.run("x * 21")).value == 42


async def test_host_functions_are_called_from_the_sandbox_process_sync_async_awaited_and_namespaced():
    calls = []

    async def llm_query(query, context=None):
        calls.append((query, context))
        await asyncio.sleep(0)
        return f"answer to {query}"

    def failing():
        raise KeyError("secret host detail")

    async with await start(functions={"llm_query": llm_query, "add": lambda a, b: a + b, "failing": failing},
                           namespaces={"agents": {"summarize": lambda values: {"summary": values["text"][:3]}}}
                           ) as session:
        assert session.pid != os.getpid()
        assert (await session.run("llm_query('q1', context='c')")).value == "answer to q1"
        assert (await session.run("await llm_query('q2')")).value == "answer to q2"
        assert (await session.run("add(2, b=3)")).value == 5
        assert (await session.run("agents.summarize({'text': 'abcdef'})")).value == {"summary": "abc"}
        assert calls == [("q1", "c"), ("q2", None)]
        failed = await session.run("failing()")
        assert "RuntimeError: failing: KeyError" in failed.error
        unknown = await session.run("agents.delete_everything()")
        assert "AttributeError" in unknown.error


async def test_the_sandbox_process_runs_under_os_limits_in_its_own_namespaces_with_no_file_system():
    assert bwrap_works()
    async with await start() as session:
        assert session.namespaced and session.pid != os.getpid()
        limits = read(f"/proc/{descendants(session.pid)[-1]}/limits")
        assert f"Max address space         {STRICT.address_space_bytes}" in " ".join(limits.split("\n"))
        assert "Max cpu time              120" in limits
        assert "Max open files            16" in limits
        assert "Max processes             16" in limits
        assert "Max core file size        0" in limits
        # The interpreter is bwrap's grandchild: in no network namespace of ours, with a root that holds no
        # /etc, /proc or project files, and with no environment (the server's secrets stay out).
        view = interpreter_view(session.pid)
        assert view["net"] != os.readlink("/proc/self/ns/net") and view["pid"] != os.readlink("/proc/self/ns/pid")
        assert not view["etc"] and not view["proc"] and not view["project"]
        assert view["environ"] in (b"", b"PWD=/\x00")
        assert (await session.run("1 + 1")).value == 2


async def test_without_namespaces_the_interpreter_starts_with_none_of_the_servers_environment(monkeypatch):
    monkeypatch.setenv("SWITCHBOARD_SANDBOX_CANARY", "server-secret")
    await spares.clear()  # a spare started before the variable was set would prove nothing
    limits = SandboxLimits(namespaces="off", step_wall_time_s=5, step_cpu_time_s=1, memory_bytes=64 * 2**20)
    async with await start(limits=limits) as session:
        assert not session.namespaced
        assert (await session.run("1 + 1")).value == 2  # the worker is Monty by now, past the script's exec
        exe, environ = program_and_environment(session.pid)
        assert exe == monty_path()
    assert b"SWITCHBOARD_SANDBOX_CANARY" not in environ
    assert [entry.split(b"=")[0] for entry in environ.split(b"\0") if entry] == [b"PATH"]


async def test_a_session_takes_a_process_started_ahead_of_it_and_never_one_another_session_used():
    await spares.clear()
    first = await start()
    assert not first.from_spare  # nothing was ready: it started its own process
    await asyncio.sleep(0.5)  # meanwhile the next session's process starts
    asked_at = ticks_since_boot()
    second = await start()
    assert second.from_spare and second.pid != first.pid
    assert ticks_since_boot(second.pid) < asked_at
    await first.close()
    await second.close()
    third = await start()
    assert third.pid not in (first.pid, second.pid)
    await third.close()


async def test_two_sessions_are_two_processes_that_share_nothing():
    async with await start(variables={"secret": "tenant-a"}) as first, await start() as second:
        assert first.pid != second.pid
        assert (await first.run("secret")).value == "tenant-a"
        assert "NameError" in (await second.run("secret")).error


@pytest.mark.parametrize("code", [
    "open('/etc/passwd').read()",
    "open('/tmp/sandbox-escape', 'w').write('x')",
    "from pathlib import Path\nPath('/etc/hostname').read_text()",
    "import os\nos.listdir('/')",
])
async def test_reading_or_writing_a_file_kills_the_session(code):
    reason = await killed_reason(code)
    assert reason.startswith("file system access refused")
    assert not escaped_file_exists()


@pytest.mark.parametrize("module", ["socket", "subprocess", "ctypes", "importlib", "requests"])
async def test_importing_a_module_the_sandbox_does_not_have_kills_the_session(module):
    assert await killed_reason(f"import {module}") == f"import refused: the sandbox has no module '{module}'"


@pytest.mark.parametrize("code", [
    "().__class__.__bases__[0].__subclasses__()",
    "'{0.__class__}'.format(1)",
    "f'{(1).__class__.__mro__}'",
    "__import__('os')",
    "getattr(print, '__globals__')",
    "__builtins__",
])
async def test_reaching_python_objects_through_dunders_and_format_strings_kills_the_session(code):
    assert (await killed_reason(code)).startswith("introspection refused")


async def test_opening_a_socket_kills_the_session():
    assert (await killed_reason("import socket\nsocket.socket().connect(('127.0.0.1', 5432))")
            ).startswith("import refused")


@pytest.mark.parametrize("code", ["import os\nos.fork()", "import os\nos.system('id')", "import os\nos.kill(1, 9)"])
async def test_forking_or_running_a_process_kills_the_session(code):
    assert (await killed_reason(code)).startswith("refused: os.")


async def test_reading_the_environment_kills_the_session():
    assert (await killed_reason("import os\nos.environ['SECRET_KEY']")).startswith("environment access refused")


async def test_an_infinite_loop_is_stopped_by_the_interpreters_time_limit_even_when_caught():
    reason = await killed_reason("try:\n    while True:\n        pass\nexcept BaseException:\n    pass")
    assert reason.startswith("time limit")


async def test_a_host_call_that_never_returns_is_killed_on_wall_time():
    async def hang():
        await asyncio.sleep(60)

    limits = SandboxLimits(namespaces="required", step_wall_time_s=0.5)
    assert (await killed_reason("hang()", functions={"hang": hang}, limits=limits)).startswith("wall time limit")


async def test_a_session_over_its_cpu_seconds_is_killed_by_the_os():
    # The interpreter's own clock would allow 30 s; RLIMIT_CPU (1 s) kills the process first.
    limits = SandboxLimits(namespaces="required", step_cpu_time_s=30, session_cpu_time_s=1, step_wall_time_s=20)
    assert (await killed_reason("while True:\n    pass", limits=limits)).startswith("the sandbox process died")


@pytest.mark.parametrize("code", ["'a' * 10**9", "chunks = []\nwhile True:\n    chunks.append('x' * 10**7)"])
async def test_a_memory_bomb_kills_the_session(code):
    assert (await killed_reason(code)).startswith("memory limit")


async def test_deep_recursion_kills_the_session():
    assert (await killed_reason("def down(n):\n    return down(n + 1)\ndown(0)")).startswith("recursion limit")


@pytest.mark.parametrize("code", ["while True:\n    print('x' * 1000)", "'y' * 1_000_000"])
async def test_a_huge_output_kills_the_session(code):
    assert (await killed_reason(code)).startswith("output limit")


async def test_a_cancelled_run_kills_the_process():
    async def hang():
        await asyncio.sleep(60)

    session = await start(functions={"hang": hang})
    pid = session.pid
    task = asyncio.ensure_future(session.run("hang()"))
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not session.alive
    await asyncio.sleep(0.2)
    assert gone(pid)
