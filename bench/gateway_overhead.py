#!/usr/bin/env python
"""What the gateway adds to a call: wrk against a fast fake upstream, direct and through the gateway.

    .venv/bin/python bench/gateway_overhead.py [--duration 5] [--server uvicorn|daphne|both] [--rename]
    .venv/bin/python bench/gateway_overhead.py --compare-ref REF [--rounds 8] [--duration 5]

It starts the fake upstream (tests/support/fake_upstream.py: raw asyncio on uvloop), creates
a throwaway PostgreSQL database (BENCH_POSTGRES_URL, default postgres://postgres@127.0.0.1:5432/postgres
names the server) holding one organization, one API key and one `openai` block on that
upstream, starts the gateway in its production configuration (DEBUG off, PostgreSQL, one
process: uvicorn + uvloop + httptools without access log, or daphne), and measures the
same request both ways: p50/p99 at concurrency 1 and requests/s at concurrency 32,
non-streaming and streaming (16 chunks). It also runs bench/bare_proxy.py (a Channels consumer
that only forwards with aiohttp) as a yardstick for what the gateway's pipeline itself costs.
Needs `wrk` (apt-get install -y wrk).
`--rename` gives the block an upstream model name, so every streamed chunk is re-encoded
(the cost of rewriting `model`); by default the upstream echoes the block id and chunks pass
through untouched. The database is dropped at the end.

`--compare-ref REF` measures the tail instead: the gateway of git REF (exported with `git archive`
into a temporary folder, run from there on the same database and upstream), this tree's gateway
and the bare proxy, at concurrency 32, in interleaved rounds (the order rotates every round) so
that whatever else the machine is doing hits every side alike. It prints p50/p90/p99/max,
requests/s and the server's CPU time per request per side: the median over the rounds, and the
p99 range. REF's gateway runs on the database this tree migrated, so REF must share its schema.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
BLOCK_ID = "bench-upstream"

WRK_SCRIPT = r"""
local stream = os.getenv("STREAM") == "1"
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local key = os.getenv("API_KEY")
if key and key ~= "" then wrk.headers["Authorization"] = "Bearer " .. key end
wrk.body = '{"model":"' .. os.getenv("MODEL") .. '","messages":[{"role":"user","content":"Say hello."}],' ..
  '"max_tokens":16' .. (stream and ',"stream":true' or '') .. '}'
function done(summary, latency, requests)
  io.write(string.format("RESULT rps=%.1f p50=%.3f p90=%.3f p99=%.3f max=%.3f errors=%d non2xx=%d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000,
    latency:percentile(90) / 1000, latency:percentile(99) / 1000, latency.max / 1000,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status))
end
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"{what} exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"{what} did not listen on {port} within {timeout:.0f} s")


def start_upstream() -> tuple[subprocess.Popen, int]:
    port = free_port()
    process = subprocess.Popen([PY, "-m", "tests.support.fake_upstream", "--port", str(port)], cwd=ROOT,
                               stdout=subprocess.DEVNULL)
    wait_for_port(port, process, "the fake upstream")
    return process, port


def create_database(server_url: str) -> tuple[str, str]:
    import psycopg

    name = f"sb_bench_{os.getpid()}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(server_url)
    return name, urlunsplit(parts._replace(path=f"/{name}"))


def drop_database(server_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


SETUP = """
import sys
from django.core.management import call_command
call_command("migrate", verbosity=0)
from registry.models import Block, Organization
from registry.services import api_key_create
org = Organization.objects.create(name="Bench", slug="bench")
config = {"base_url": sys.argv[1]}
if sys.argv[2]:
    config["model"] = sys.argv[2]
Block.objects.create(block_id=sys.argv[3], name="Bench upstream", kind="llm", backend_type="openai",
                     backend_config=config, organization=org)
print("KEY", api_key_create(organization=org, name="bench")[1])
"""


def gateway_env(database_url: str) -> dict[str, str]:
    return {**os.environ, "DATABASE_URL": database_url, "DEBUG": "0", "SECRET_KEY": secrets.token_urlsafe(32),
            "SECURE_SSL_REDIRECT": "0", "ALLOWED_HOSTS": "127.0.0.1,localhost", "LOG_LEVEL": "WARNING",
            "SWITCHBOARD_DEV_OPEN_ACCESS": "0", "DJANGO_SETTINGS_MODULE": "webapp.settings",
            # The fake upstream listens on loopback, which tenant blocks may not reach by default.
            "EGRESS_ALLOW": "127.0.0.1/32"}


def set_up(env: dict[str, str], upstream_url: str, upstream_model: str) -> str:
    out = subprocess.run([PY, "-c", "import django; django.setup()\n" + SETUP, upstream_url, upstream_model,
                          BLOCK_ID], cwd=ROOT, env=env, capture_output=True, text=True, check=True).stdout
    return re.search(r"^KEY (\S+)$", out, re.M).group(1)


def start_gateway(server: str, env: dict[str, str], app: str = "webapp.asgi:application",
                  tree: Path = ROOT) -> tuple[subprocess.Popen, int]:
    """`tree`: the source tree to serve (PYTHONPATH names it, so the venv's editable install of
    another checkout never wins)."""
    port = free_port()
    env = {**env, "PYTHONPATH": str(tree)}
    if server == "uvicorn":
        cmd = [PY, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port),
               "--loop", "uvloop", "--http", "httptools", "--no-access-log",
               # The gateway flushes metrics on lifespan shutdown; the bare proxy has no lifespan.
               "--lifespan", "on" if app == "webapp.asgi:application" else "off"]
    else:
        cmd = [PY, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "--verbosity", "0", "webapp.asgi:application"]
    process = subprocess.Popen(cmd, cwd=tree, env=env, stdout=subprocess.DEVNULL)
    wait_for_port(port, process, f"the gateway ({server})")
    return process, port


def wrk(url: str, *, connections: int, seconds: float, stream: bool, key: str, script: str) -> dict[str, float]:
    threads = 1 if connections == 1 else 2
    env = {**os.environ, "MODEL": BLOCK_ID, "STREAM": "1" if stream else "0", "API_KEY": key}
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s", "-s", script, url],
                         env=env, capture_output=True, text=True, check=True).stdout
    found = re.search(r"RESULT rps=([\d.]+) p50=([\d.]+) p90=([\d.]+) p99=([\d.]+) max=([\d.]+) "
                      r"errors=(\d+) non2xx=(\d+)", out)
    if not found:
        sys.exit(f"wrk printed no result:\n{out}")
    rps, p50, p90, p99, slowest, errors, non2xx = found.groups()
    if int(errors) or int(non2xx):
        print(f"  warning: {url} had {errors} socket errors and {non2xx} non-2xx replies", file=sys.stderr)
    return {"rps": float(rps), "p50": float(p50), "p90": float(p90), "p99": float(p99), "max": float(slowest),
            "failed": int(errors) + int(non2xx)}


def measure(label: str, gateway_url: str, direct_url: str, bare_url: str, key: str, seconds: float,
            script: str) -> list[str]:
    rows = []
    for stream in (False, True):
        kind = "stream 16 chunks" if stream else "non-streaming"
        # A short warm-up fills the gateway's key and block caches and its upstream connection pool.
        wrk(gateway_url, connections=4, seconds=1, stream=stream, key=key, script=script)
        wrk(bare_url, connections=4, seconds=1, stream=stream, key="", script=script)
        d1 = wrk(direct_url, connections=1, seconds=seconds, stream=stream, key="", script=script)
        g1 = wrk(gateway_url, connections=1, seconds=seconds, stream=stream, key=key, script=script)
        d32 = wrk(direct_url, connections=32, seconds=seconds, stream=stream, key="", script=script)
        g32 = wrk(gateway_url, connections=32, seconds=seconds, stream=stream, key=key, script=script)
        b32 = wrk(bare_url, connections=32, seconds=seconds, stream=stream, key="", script=script)
        rows.append(
            f"| {label} | {kind} | {d1['p50']:.2f} | {g1['p50']:.2f} | **+{g1['p50'] - d1['p50']:.2f}** "
            f"| {d1['p99']:.2f} | {g1['p99']:.2f} | +{g1['p99'] - d1['p99']:.2f} "
            f"| {d32['rps']:,.0f} | **{g32['rps']:,.0f}** | {g32['rps'] / d32['rps']:.2f} "
            f"| {b32['rps']:,.0f} | {g32['rps'] / b32['rps']:.2f} |"
        )
        print(rows[-1], flush=True)
    return rows


def export_tree(ref: str, into: Path) -> Path:
    """The files of git `ref`, unpacked into `into` (no worktree registered, nothing to clean in git)."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", ref], capture_output=True,
                             check=True).stdout
    into.mkdir(parents=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def compare(sides: dict[str, tuple[str, str, int]], *, rounds: int, seconds: float, connections: int,
            script: str) -> list[str]:
    """`sides`: label -> (url, key, server pid). Every round runs each side once per request kind, the
    order rotated every round, so a burst of load from elsewhere on the machine lands on all sides.
    The server's CPU time per request is counted too: other load moves it far less than latency."""
    labels = list(sides)
    results: dict[tuple[str, bool], list[dict[str, float]]] = {(label, s): [] for label in labels
                                                               for s in (False, True)}
    for stream in (False, True):
        for label in labels:  # Warm-up: caches, upstream connection pools, lazy imports.
            url, key, _ = sides[label]
            wrk(url, connections=4, seconds=2, stream=stream, key=key, script=script)
    for n in range(rounds):
        order = labels[n % len(labels):] + labels[:n % len(labels)]
        for stream in (False, True):
            for label in order:
                url, key, pid = sides[label]
                cpu = cpu_seconds(pid)
                run = wrk(url, connections=connections, seconds=seconds, stream=stream, key=key, script=script)
                run["cpu_us"] = (cpu_seconds(pid) - cpu) * 1e6 / max(1.0, run["rps"] * max(1, round(seconds)))
                if run["failed"]:
                    sys.exit(f"{label} failed requests: its latencies would not be the gateway's")
                results[(label, stream)].append(run)
                print(f"  round {n + 1} {label:<10} {'stream' if stream else 'json  '} p50 {run['p50']:6.2f} "
                      f"p90 {run['p90']:6.2f} p99 {run['p99']:7.2f} max {run['max']:7.2f} ms "
                      f"{run['rps']:7,.0f} req/s {run['cpu_us']:5.0f} us CPU/req", flush=True)
    rows = []
    for stream in (False, True):
        for label in labels:
            runs = results[(label, stream)]
            m = {name: median([r[name] for r in runs]) for name in ("p50", "p90", "p99", "max", "rps", "cpu_us")}
            p99s = [r["p99"] for r in runs]
            rows.append(f"| {label} | {'stream 16 chunks' if stream else 'non-streaming'} | {m['p50']:.2f} "
                        f"| {m['p90']:.2f} | **{m['p99']:.2f}** ({min(p99s):.1f}–{max(p99s):.1f}) | {m['max']:.1f} "
                        f"| {m['p99'] / m['p50']:.1f}× | {m['rps']:,.0f} | {m['cpu_us']:,.0f} |")
    return rows


def main_compare(args: argparse.Namespace, env: dict[str, str], key: str, direct_url: str, script: str,
                 children: list[subprocess.Popen], scratch: Path) -> None:
    base_tree = export_tree(args.compare_ref, scratch / "ref")
    sha = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", args.compare_ref], capture_output=True,
                         text=True, check=True).stdout.strip()
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, check=True).stdout.strip()
    base, base_port = start_gateway("uvicorn", env, tree=base_tree)
    children.append(base)
    this, this_port = start_gateway("uvicorn", env)
    children.append(this)
    bare, bare_port = start_gateway("uvicorn", {**env, "BARE_PROXY_UPSTREAM": direct_url},
                                    app="bench.bare_proxy:application")
    children.append(bare)
    sides = {f"ref {sha}": (f"http://127.0.0.1:{base_port}/v1/chat/completions", key, base.pid),
             f"this {head}{'+' if dirty else ''}": (f"http://127.0.0.1:{this_port}/v1/chat/completions", key,
                                                    this.pid),
             "bare proxy": (f"http://127.0.0.1:{bare_port}/", "", bare.pid)}
    print(f"c={args.connections}, {args.rounds} interleaved rounds of {args.duration:g} s per side and kind "
          f"({args.compare_ref} = {sha} against this tree, {head}{' with uncommitted changes' if dirty else ''})",
          flush=True)
    rows = compare(sides, rounds=args.rounds, seconds=args.duration, connections=args.connections, script=script)
    print("\n| side | request | p50 ms | p90 ms | p99 ms (range over rounds) | max ms | p99/p50 | req/s "
          "| server CPU µs/req |\n|---|---|---|---|---|---|---|---|---|\n" + "\n".join(rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run (8 runs per server)")
    parser.add_argument("--server", choices=("uvicorn", "daphne", "both"), default="uvicorn")
    parser.add_argument("--rename", action="store_true", help="make the gateway rewrite `model` in every chunk")
    parser.add_argument("--compare-ref", metavar="REF",
                        help="compare the tail at c=32 with the gateway of git REF, in interleaved rounds")
    parser.add_argument("--rounds", type=int, default=8, help="rounds of the --compare-ref run")
    parser.add_argument("--connections", type=int, default=32, help="concurrency of the --compare-ref run")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install -y wrk")
    server_url = os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")

    children: list[subprocess.Popen] = []
    db_name = None
    scratch = Path(tempfile.mkdtemp(prefix="sb_bench_"))
    script = str(scratch / "bench.lua")
    Path(script).write_text(WRK_SCRIPT)
    try:
        upstream, upstream_port = start_upstream()
        children.append(upstream)
        db_name, database_url = create_database(server_url)
        env = gateway_env(database_url)
        key = set_up(env, f"http://127.0.0.1:{upstream_port}/ok/v1", "upstream-name" if args.rename else "")
        direct_url = f"http://127.0.0.1:{upstream_port}/ok/v1/chat/completions"
        if args.compare_ref:
            main_compare(args, env, key, direct_url, script, children, scratch)
            return
        header = ("| server | request | direct p50 ms | gateway p50 ms | added p50 | direct p99 ms | gateway p99 ms "
                  "| added p99 | direct req/s c=32 | gateway req/s c=32 | gateway/direct "
                  "| bare proxy req/s c=32 | gateway/bare |\n"
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        print(f"wrk {args.duration:g} s per run; c=1 latency, c=32 throughput; model rewrite "
              f"{'on' if args.rename else 'off'}\n{header}", flush=True)
        # The yardstick: the same Channels consumer + aiohttp forwarding with nothing else.
        bare, bare_port = start_gateway("uvicorn", {**env, "BARE_PROXY_UPSTREAM": direct_url},
                                        app="bench.bare_proxy:application")
        children.append(bare)
        bare_url = f"http://127.0.0.1:{bare_port}/"
        rows = []
        for server in (("uvicorn", "daphne") if args.server == "both" else (args.server,)):
            gateway, port = start_gateway(server, env)
            try:
                rows += measure(server, f"http://127.0.0.1:{port}/v1/chat/completions", direct_url, bare_url,
                                key, args.duration, script)
            finally:
                gateway.send_signal(signal.SIGTERM)
                gateway.wait(15)
        print("\n" + header + "\n" + "\n".join(rows))
    finally:
        for child in children:
            child.terminate()
        for child in children:
            child.wait(15)
        if db_name:
            drop_database(server_url, db_name)
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
