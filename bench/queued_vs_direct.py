"""Direct engine vs the direct path vs the queued path: TTFT and throughput at 1 and 64 streams.

    .venv/bin/python bench/queued_vs_direct.py [--engine-url http://gpu-host:30000] [--quick]

Without --engine-url it starts the fake SGLang engine (tests/support/fake_sglang.py) with a
fixed per-token delay. It makes a throwaway PostgreSQL database, migrates it, registers the
engine, starts a Celery worker (threads pool, the production shape) and, when the gateway's
/v1/chat/completions exists, a uvicorn gateway. Columns, all measured side by side in one run:

  engine            an aiohttp client streaming straight from the engine (the baseline)
  backend-direct    SGLangBackend in this process (engine pick + pooled stream), no HTTP front
  backend-queued    QueuedBackend in this process: Celery task -> worker -> Redis Stream -> reader
  gateway-direct    POST /v1/chat/completions through uvicorn, block backend_type sglang
  gateway-queued    the same, block with dispatch: queued

Targets at 64 streams: gateway-direct >= 95 % and gateway-queued >= 90 % of engine throughput;
added TTFT p50 <= 5 ms (direct) and <= 25 ms (queued).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not answer in {timeout}s")


def spawn(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


# -- clients --------------------------------------------------------------------------------
async def sse_stream(session, url: str, body: dict, headers: dict) -> tuple[float | None, int]:
    """(seconds to first content, content chunks) of one OpenAI-style streamed answer."""
    import orjson

    started = time.perf_counter()
    first = None
    chunks = 0
    async with session.post(url, data=orjson.dumps(body), headers=headers) as resp:
        if resp.status != 200:
            raise RuntimeError(f"{url} answered {resp.status}: {(await resp.read())[:200]!r}")
        usage = None
        async for line in resp.content:
            if not line.startswith(b"data:") or line.startswith(b"data: [DONE]"):
                continue
            chunk = orjson.loads(line[5:])
            usage = chunk.get("usage") or usage
            for choice in chunk.get("choices") or []:
                if (choice.get("delta") or {}).get("content"):
                    chunks += 1
                    if first is None:
                        first = time.perf_counter() - started
    # A queued stream packs ~20 ms of tokens per chunk: count the engine's tokens, not chunks.
    return first, (usage or {}).get("completion_tokens") or chunks


async def backend_stream(backend, request) -> tuple[float | None, int]:
    started = time.perf_counter()
    first = None
    chunks = 0
    usage = None
    async for delta in backend.stream_chat(request):
        usage = delta.usage or usage
        if delta.content:
            chunks += 1
            if first is None:
                first = time.perf_counter() - started
    return first, (usage or {}).get("completion_tokens") or chunks


async def measure(make_one, concurrency: int, repeat: int) -> dict:
    ttfts: list[float] = []
    rates: list[float] = []
    for _ in range(repeat):
        started = time.perf_counter()
        results = await asyncio.gather(*(make_one() for _ in range(concurrency)))
        wall = time.perf_counter() - started
        ttfts += [r[0] for r in results if r[0] is not None]
        rates.append(sum(r[1] for r in results) / wall)
    return {"ttft_p50_ms": statistics.median(ttfts) * 1000, "tok_s": max(rates)}


# -- setup ----------------------------------------------------------------------------------
def make_database(admin_url: str) -> str:
    if admin_url.startswith("sqlite:"):
        # A machine without PostgreSQL (the lent GPU box): a throwaway SQLite file beside the given path.
        path = Path("/" + urlsplit(admin_url).path.lstrip("/")).with_name(f"sb_bench_{os.getpid()}.sqlite3")
        path.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{path}"
    import psycopg

    name = f"sb_bench_{os.getpid()}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return urlunsplit(urlsplit(admin_url)._replace(path="/" + name))


def drop_database(admin_url: str, url: str) -> None:
    if url.startswith("sqlite:"):
        Path("/" + urlsplit(url).path.lstrip("/")).unlink(missing_ok=True)
        return
    import psycopg

    name = urlsplit(url).path.lstrip("/")
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def keep_heartbeat(engine_id: int, stop_event: threading.Event) -> None:
    from django.utils import timezone

    from inference.models import Engine

    while not stop_event.wait(1.0):
        Engine.objects.filter(pk=engine_id).update(last_heartbeat=timezone.now())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engine-url", help="a real SGLang server (default: start the fake engine)")
    parser.add_argument("--token-delay-ms", type=float, default=20.0)
    parser.add_argument("--tokens", type=int, default=64, help="max_tokens per request")
    parser.add_argument("--concurrency", default="1,64")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="short run while developing")
    parser.add_argument("--workers", type=int, default=1, help="Celery worker processes on the engine's queue")
    parser.add_argument("--gateway-workers", type=int, default=1, help="uvicorn worker processes")
    parser.add_argument("--paths", default="engine,backend-direct,backend-queued,gateway-direct,gateway-queued",
                        help="which columns to run (engine is always run: it is the baseline)")
    parser.add_argument("--admin-db-url", default="postgres://postgres@127.0.0.1:5432/postgres",
                        help="PostgreSQL to create a throwaway database on, or sqlite:////dir/x.db for a file")
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15"))
    args = parser.parse_args()
    if args.quick:
        args.tokens, args.repeat = 32, 1

    logs = ROOT / "var" / "bench"
    logs.mkdir(parents=True, exist_ok=True)
    db_url = make_database(args.admin_db_url)
    env = {**os.environ, "DATABASE_URL": db_url, "REDIS_URL": args.redis_url, "DEBUG": "0",
           "SECRET_KEY": "bench-only-not-secret", "SECURE_SSL_REDIRECT": "0",
           "ALLOWED_HOSTS": "127.0.0.1,localhost", "PYTHONUNBUFFERED": "1"}
    os.environ.update(env)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")
    procs: list[subprocess.Popen] = []
    stop_event = threading.Event()
    try:
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        import redis

        redis.Redis.from_url(args.redis_url).flushdb()

        engine_url = args.engine_url
        if not engine_url:
            port = free_port()
            procs.append(spawn([sys.executable, "-m", "tests.support.fake_sglang", "--port", str(port),
                                "--token-delay-ms", str(args.token_delay_ms), "--tokens", str(args.tokens)],
                               env, logs / "engine.log"))
            engine_url = f"http://127.0.0.1:{port}"
        wait_http(f"{engine_url}/health", timeout=600)

        from django.utils import timezone

        from inference.models import Engine
        from registry.models import Block, Organization
        from registry.services import api_key_create

        org = Organization.objects.create(name="Bench", slug="bench")
        _, key = api_key_create(organization=org, name="bench", created_by=None)
        direct_block = Block.objects.create(block_id="bench-direct", name="bench-direct", organization=org,
                                            backend_type="sglang", backend_config={})
        queued_block = Block.objects.create(block_id="bench-queued", name="bench-queued", organization=org,
                                            backend_type="sglang",
                                            backend_config={"dispatch": "queued", "queue": "inference.gpu.bench"})
        engine = Engine.objects.create(block=direct_block, node="bench", endpoint=engine_url,
                                       state=Engine.READY, last_heartbeat=timezone.now())
        threading.Thread(target=keep_heartbeat, args=(engine.pk, stop_event), daemon=True).start()

        # The queued task on the worker streams from the block's engines (no local supervisor here).
        Engine.objects.create(block=queued_block, node="bench-q", endpoint=engine_url, state=Engine.READY,
                              last_heartbeat=timezone.now() + timezone.timedelta(days=1))
        for i in range(args.workers):
            procs.append(spawn([sys.executable, "-m", "celery", "-A", "webapp", "worker", "-Q", "inference.gpu.bench",
                                "-P", "threads", "-c", "128", "--without-gossip", "--without-mingle",
                                "--without-heartbeat", "-l", "WARNING", "-n", f"bench-{os.getpid()}-{i}@%h"],
                               env, logs / f"worker{i}.log"))
        gateway_port = free_port()
        procs.append(spawn([sys.executable, "-m", "uvicorn", "webapp.asgi:application", "--host", "127.0.0.1",
                            "--port", str(gateway_port), "--loop", "uvloop", "--http", "httptools",
                            "--no-access-log", "--lifespan", "off", "--workers", str(args.gateway_workers)],
                           env, logs / "gateway.log"))
        wait_http(f"http://127.0.0.1:{gateway_port}/healthz")
        time.sleep(3)  # the worker's startup

        asyncio.run(run_all(args, engine_url, f"http://127.0.0.1:{gateway_port}", key))
    finally:
        stop_event.set()
        for proc in procs:
            stop(proc)
        from django.db import connections

        connections.close_all()
        drop_database(args.admin_db_url, db_url)


async def run_all(args, engine_url: str, gateway_url: str, key: str) -> None:
    import aiohttp

    from inference.backends.base import ChatRequest
    from inference.backends.factory import backend_for
    from inference.backends.openai_compat import close_sessions

    messages = [{"role": "user", "content": "Write a long story about a lighthouse."}]
    body = {"model": "default", "messages": messages, "max_tokens": args.tokens, "stream": True,
            "stream_options": {"include_usage": True}, "temperature": 0, "ignore_eos": True}
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                    timeout=aiohttp.ClientTimeout(total=600))
    headers = {"Content-Type": "application/json"}
    auth = {**headers, "Authorization": f"Bearer {key}"}
    direct_backend = backend_for(block_id="bench-direct", backend_type="sglang", config={})
    queued_backend = backend_for(block_id="bench-queued", backend_type="sglang",
                                 config={"dispatch": "queued", "queue": "inference.gpu.bench"})

    def chat() -> ChatRequest:
        return ChatRequest(messages=messages, model="default", max_tokens=args.tokens, temperature=0,
                           extra={"ignore_eos": True})

    paths = {
        "engine": lambda: sse_stream(session, f"{engine_url}/v1/chat/completions", body, headers),
        "backend-direct": lambda: backend_stream(direct_backend, chat()),
        "backend-queued": lambda: backend_stream(queued_backend, chat()),
        "gateway-direct": lambda: sse_stream(session, f"{gateway_url}/v1/chat/completions",
                                             {**body, "model": "bench-direct"}, auth),
        "gateway-queued": lambda: sse_stream(session, f"{gateway_url}/v1/chat/completions",
                                             {**body, "model": "bench-queued"}, auth),
    }
    wanted = {"engine", *args.paths.split(",")}
    paths = {name: one for name, one in paths.items() if name in wanted}
    levels = [int(c) for c in args.concurrency.split(",")]
    results: dict[tuple[str, int], dict | str] = {}
    for name, one in paths.items():
        try:
            await one()  # warm connections and caches
        except Exception as exc:  # a column that cannot run says why instead of a number
            for level in levels:
                results[(name, level)] = f"unavailable: {str(exc)[:60]}"
            continue
        for level in levels:
            results[(name, level)] = await measure(one, level, args.repeat)
    await session.close()
    await close_sessions()

    print(f"\nengine: {'real ' + engine_url if args.engine_url else f'fake, {args.token_delay_ms} ms/token'}, "
          f"{args.tokens} tokens per request, best of {args.repeat}, {args.gateway_workers} gateway process(es)\n")
    print(f"{'path':16} {'streams':>7} {'TTFT p50 ms':>12} {'added ms':>9} {'tok/s':>9} {'vs engine':>9}")
    for level in levels:
        base = results[("engine", level)]
        for name in paths:
            r = results[(name, level)]
            if isinstance(r, str):
                print(f"{name:16} {level:>7} {r}")
                continue
            added = r["ttft_p50_ms"] - base["ttft_p50_ms"] if isinstance(base, dict) else float("nan")
            ratio = r["tok_s"] / base["tok_s"] if isinstance(base, dict) else float("nan")
            print(f"{name:16} {level:>7} {r['ttft_p50_ms']:>12.1f} {added:>9.1f} {r['tok_s']:>9.0f} "
                  f"{ratio:>8.0%}")


if __name__ == "__main__":
    main()
