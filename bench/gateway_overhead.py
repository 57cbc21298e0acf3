#!/usr/bin/env python
"""What the gateway adds to a call: wrk against a fast fake upstream, direct and through the gateway.

    .venv/bin/python bench/gateway_overhead.py [--duration 5] [--server uvicorn|daphne|both] [--rename]

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
  io.write(string.format("RESULT rps=%.1f p50=%.3f p99=%.3f errors=%d non2xx=%d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000,
    latency:percentile(99) / 1000,
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
            "SWITCHBOARD_DEV_OPEN_ACCESS": "0", "DJANGO_SETTINGS_MODULE": "webapp.settings"}


def set_up(env: dict[str, str], upstream_url: str, upstream_model: str) -> str:
    out = subprocess.run([PY, "-c", "import django; django.setup()\n" + SETUP, upstream_url, upstream_model,
                          BLOCK_ID], cwd=ROOT, env=env, capture_output=True, text=True, check=True).stdout
    return re.search(r"^KEY (\S+)$", out, re.M).group(1)


def start_gateway(server: str, env: dict[str, str], app: str = "webapp.asgi:application") -> tuple[subprocess.Popen, int]:
    port = free_port()
    if server == "uvicorn":
        cmd = [PY, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port),
               "--loop", "uvloop", "--http", "httptools", "--no-access-log",
               # The gateway flushes metrics on lifespan shutdown; the bare proxy has no lifespan.
               "--lifespan", "on" if app == "webapp.asgi:application" else "off"]
    else:
        cmd = [PY, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "--verbosity", "0", "webapp.asgi:application"]
    process = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    wait_for_port(port, process, f"the gateway ({server})")
    return process, port


def wrk(url: str, *, connections: int, seconds: float, stream: bool, key: str, script: str) -> dict[str, float]:
    threads = 1 if connections == 1 else 2
    env = {**os.environ, "MODEL": BLOCK_ID, "STREAM": "1" if stream else "0", "API_KEY": key}
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s", "-s", script, url],
                         env=env, capture_output=True, text=True, check=True).stdout
    found = re.search(r"RESULT rps=([\d.]+) p50=([\d.]+) p99=([\d.]+) errors=(\d+) non2xx=(\d+)", out)
    if not found:
        sys.exit(f"wrk printed no result:\n{out}")
    rps, p50, p99, errors, non2xx = found.groups()
    if int(errors) or int(non2xx):
        print(f"  warning: {url} had {errors} socket errors and {non2xx} non-2xx replies", file=sys.stderr)
    return {"rps": float(rps), "p50": float(p50), "p99": float(p99)}


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run (8 runs per server)")
    parser.add_argument("--server", choices=("uvicorn", "daphne", "both"), default="uvicorn")
    parser.add_argument("--rename", action="store_true", help="make the gateway rewrite `model` in every chunk")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install -y wrk")
    server_url = os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")

    children: list[subprocess.Popen] = []
    db_name = None
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(WRK_SCRIPT)
        script = handle.name
    try:
        upstream, upstream_port = start_upstream()
        children.append(upstream)
        db_name, database_url = create_database(server_url)
        env = gateway_env(database_url)
        key = set_up(env, f"http://127.0.0.1:{upstream_port}/ok/v1", "upstream-name" if args.rename else "")
        direct_url = f"http://127.0.0.1:{upstream_port}/ok/v1/chat/completions"
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
            child.wait(10)
        if db_name:
            drop_database(server_url, db_name)
        os.unlink(script)


if __name__ == "__main__":
    main()
