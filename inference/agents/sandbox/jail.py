"""The command a sandbox process starts with: OS limits, then bubblewrap's namespaces, then Monty.

Monty's pool spawns its worker from one executable path with the protocol's arguments, so the limits
and the namespaces live in a small /bin/sh script written once per set of limits into a private
directory (0700) of this process: `ulimit` sets RLIMIT_CORE/FSIZE/CPU/AS/NOFILE/NPROC on the shell,
which then execs bwrap (or, without it, Monty with an empty environment through `env -i`) so the limits
carry over to the interpreter.
"""

from __future__ import annotations

import atexit
import logging
import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import threading
from pathlib import Path

from inference.agents.sandbox.limits import SandboxLimits

logger = logging.getLogger(__name__)

BWRAP = "/usr/bin/bwrap"

_lock = threading.Lock()
_scripts: dict[tuple, Path] = {}
_directory: Path | None = None
_bwrap_works: bool | None = None


class SandboxUnavailable(RuntimeError):
    """The sandbox cannot start here as configured (no Monty binary, or namespaces required but bwrap
    does not work)."""


def monty_binary() -> str:
    """The `monty` worker binary that pydantic-monty-runtime installs next to this interpreter (a
    virtualenv's bin/), else on PATH."""
    beside = Path(sysconfig.get_path("scripts")) / "monty"
    if beside.is_file():
        return str(beside)
    if found := shutil.which("monty", path=f"{Path(sys.executable).parent}{os.pathsep}{os.defpath}"):
        return found
    raise SandboxUnavailable("the monty binary is missing (pip install pydantic-monty==1.4.0)")


def _shell() -> str:
    return os.path.realpath("/bin/sh")


def _env() -> str:
    return shutil.which("env", path=os.defpath) or "/usr/bin/env"


def _bwrap_arguments(monty: str) -> list[str]:
    # No network, IPC, UTS, PID or cgroup sharing (--unshare-all), no capabilities, no environment (the
    # server's secrets stay out), killed with its parent. The file system is empty but for the read-only
    # shared libraries, the interpreter binary and a shell to set RLIMIT_NPROC from inside (see
    # script_text).
    return [
        BWRAP, "--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL", "--clearenv",
        "--ro-bind", "/usr/lib", "/usr/lib", "--ro-bind-try", "/usr/lib64", "/usr/lib64",
        "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64",
        "--ro-bind", monty, "/monty", "--ro-bind", _shell(), "/sh", "--chdir", "/",
    ]


def bwrap_works() -> bool:
    """Whether bubblewrap can make its namespaces here (probed once per process: it needs unprivileged
    user namespaces or root, which some containers forbid)."""
    global _bwrap_works
    with _lock:
        if _bwrap_works is None:
            _bwrap_works = False
            if Path(BWRAP).exists():
                try:
                    probe = subprocess.run([*_bwrap_arguments(monty_binary()), "/monty", "--version"],
                                           capture_output=True, timeout=10, check=False)
                    _bwrap_works = probe.returncode == 0
                    if not _bwrap_works:
                        logger.warning("bwrap cannot create namespaces here (%s); sandboxes run with OS "
                                       "limits only", probe.stderr.decode(errors="replace").strip()[:200])
                except (OSError, subprocess.TimeoutExpired) as exc:
                    logger.warning("bwrap probe failed (%s); sandboxes run with OS limits only", exc)
            else:
                logger.warning("%s is missing; sandboxes run with OS limits only (apt-get install bubblewrap)",
                               BWRAP)
        return _bwrap_works


def _private_directory() -> Path:
    global _directory
    if _directory is None:
        _directory = Path(tempfile.mkdtemp(prefix="switchboard-sandbox-"))
        atexit.register(shutil.rmtree, _directory, True)
    return _directory


def script_text(limits: SandboxLimits, *, monty: str, namespaces: bool) -> str:
    ulimits = " && ".join([
        "ulimit -c 0",  # no core dump of a process holding the context
        "ulimit -f 0",  # no file written, should anything ever reach one
        f"ulimit -t {int(limits.session_cpu_time_s)}",
        f"ulimit -v {limits.address_space_bytes // 1024}",
        f"ulimit -n {int(limits.max_open_files)}",
    ])
    if namespaces:
        # RLIMIT_NPROC counts every process of the user, so set outside it would stop a non-root server
        # (whose own threads count) from starting bwrap at all. Set inside the new user namespace it
        # bounds the processes of that namespace: the sandbox's.
        inner = f'ulimit -p {int(limits.max_processes)} || exit 97; exec /monty "$@"'
        command = f'{shlex.join([*_bwrap_arguments(monty), "/sh", "-c", inner, "sandbox"])} "$@"'
    else:
        # Without bubblewrap's --clearenv the interpreter would inherit the server's environment (its
        # SECRET_KEY, database and provider credentials): `env -i` starts it with none but PATH.
        command = f'{shlex.join([_env(), "-i", f"PATH={os.defpath}", monty])} "$@"'
    return ("#!/bin/sh\n# Written by inference/agents/sandbox/jail.py: one sandbox process's limits.\n"
            f"{ulimits} || exit 97\nexec {command}\n")


def worker_command(limits: SandboxLimits) -> tuple[Path, bool]:
    """The script Monty's pool runs as its worker for these limits, and whether it uses namespaces."""
    namespaces = limits.namespaces != "off" and bwrap_works()
    if limits.namespaces == "required" and not namespaces:
        raise SandboxUnavailable("sandbox namespaces are required but bubblewrap does not work here "
                                 f"({BWRAP}; apt-get install bubblewrap)")
    monty = monty_binary()
    key = (limits.session_cpu_time_s, limits.address_space_bytes, limits.max_open_files,
           limits.max_processes, monty, namespaces)
    with _lock:
        if (path := _scripts.get(key)) is None:
            path = _private_directory() / f"worker-{len(_scripts)}.sh"
            path.write_text(script_text(limits, monty=monty, namespaces=namespaces))
            path.chmod(0o700)
            _scripts[key] = path
    return path, namespaces
