"""What one sandbox session may use. Every limit is enforced twice where it can be: by the interpreter
(Monty stops the code with an uncatchable error) and by the OS or the host (the process is killed), so a
bug in one layer still leaves the other."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

MiB = 1024 * 1024


@dataclass(frozen=True)
class SandboxLimits:
    # Wall time of one code step, host calls (llm_query, tools, child agents) included. Past it the
    # host kills the process: nothing inside the sandbox can catch or delay that.
    step_wall_time_s: float = 120.0
    # Interpreter execution time of one step, host calls excluded (Monty's max_feed_duration_secs;
    # the pool kills the process one second after it if the interpreter did not stop by itself).
    step_cpu_time_s: float = 10.0
    # CPU seconds of the whole session (RLIMIT_CPU on the process: SIGXCPU, then SIGKILL).
    session_cpu_time_s: int = 120
    # The interpreter's heap (Monty's max_memory, checked on every allocation).
    memory_bytes: int = 256 * MiB
    # The process's address space (RLIMIT_AS) on top of the heap: the binary, its stack, the protocol
    # buffers. An allocation past it fails in the allocator and the process dies.
    address_space_headroom_bytes: int = 256 * MiB
    # RLIMIT_NOFILE and RLIMIT_NPROC: the worker needs its three pipes and one thread; nothing forks.
    max_open_files: int = 16
    max_processes: int = 16
    # Characters one step may print before the process is killed (the action log keeps far fewer).
    max_output_chars: int = 1_000_000
    # Interpreter call depth; past it a RecursionError ends the step and the session.
    max_recursion_depth: int = 1000
    # Host calls (and name lookups) one session may make (Monty's max_suspensions).
    max_host_calls: int = 2000
    # bubblewrap namespaces (no network, no file system but the shared libraries, own PID space):
    # "auto" uses them where bwrap works, "required" refuses to start a session without them.
    namespaces: Literal["auto", "required", "off"] = "auto"

    @property
    def address_space_bytes(self) -> int:
        return self.memory_bytes + self.address_space_headroom_bytes


DEFAULT_LIMITS = SandboxLimits()
