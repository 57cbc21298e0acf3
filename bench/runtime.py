"""The low-level Runtime's speed (issue 13, item 6), each comparison side by side in one run.

    .venv/bin/python bench/runtime.py                     # starts the embedded gateway itself
    .venv/bin/python bench/runtime.py --url http://127.0.0.1:8000 --api-key sb-...
    .venv/bin/python bench/runtime.py --skip-model        # echo and split_text only

1. `echo` round trips over /ws/runtime/ (one request at a time on one socket), p50 and p95, next to the
   same request as POST /v1/runtime on a kept-alive connection; target: the socket's p50 <= 1 ms on loopback.
2. `split_text` of a 1 MB text (generated, fixed seed: paragraphs, lines, words) with the defaults
   (4000, 200, ["\\n\\n", "\\n", " ", ""]) in this process, next to LangChain's RecursiveCharacterTextSplitter
   with the same parameters on the same text (the `bench` extra: pip install -e .[bench]); the chunks are
   compared after stripping ours (LangChain strips each chunk; ours are exact slices). Target: ours <= theirs.
3. Tokens/s of `call_iter_method("lm0", "infer", ...)` on the built-in model over the socket, next to
   /v1/chat/completions streaming the same prompt with the same sampling; rounds interleaved, medians.
   Target: within 5 %. Tokens are counted the same on both sides: one per delta that carries text (the
   built-in backend sends one token per delta).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.cpu_model import start_gateway  # noqa: E402
from inference.runtime.splitter import split_text  # noqa: E402

PROMPT = [{"role": "user", "content": "Write a short story about a lighthouse keeper and a storm."}]


def socket_for(url: str, api_key: str | None):
    from websockets.sync.client import connect

    parts = urlsplit(url)
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else None
    return connect(f"ws://{parts.netloc}/ws/runtime/", origin=f"{parts.scheme}://{parts.netloc}",
                   additional_headers=headers, compression=None, max_size=None, legacy=True)


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return ordered[len(ordered) // 2], ordered[int(len(ordered) * 0.95)]


def bench_echo(url: str, api_key: str | None, n: int) -> None:
    frame = {"type": "call_function", "function": "echo", "input": {"text": "Hello world"}}
    ws = socket_for(url, api_key)
    socket_ms = []
    for i in range(n + 200):
        started = time.perf_counter()
        ws.send(json.dumps({**frame, "id": i}))
        packet = json.loads(ws.recv())
        elapsed = (time.perf_counter() - started) * 1000
        assert packet["finish"] and packet["body"] == frame["input"], packet
        if i >= 200:  # the first ones warm the server up
            socket_ms.append(elapsed)
    ws.close()
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port)
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {api_key}"} if api_key else {})}
    http_ms = []
    body = json.dumps(frame)
    for i in range(n + 200):
        started = time.perf_counter()
        conn.request("POST", "/v1/runtime", body=body, headers=headers)
        reply = conn.getresponse().read()
        elapsed = (time.perf_counter() - started) * 1000
        assert json.loads(reply) == {"packets": [frame["input"]]}, reply
        if i >= 200:
            http_ms.append(elapsed)
    conn.close()
    p50, p95 = percentiles(socket_ms)
    h50, h95 = percentiles(http_ms)
    print(f"\n1. echo round trip, {n} sequential requests")
    print("| path | p50 ms | p95 ms |\n|---|---|---|")
    print(f"| /ws/runtime/ | {p50:.3f} | {p95:.3f} |")
    print(f"| POST /v1/runtime (keep-alive) | {h50:.3f} | {h95:.3f} |")
    print(f"socket p50 {'<=' if p50 <= 1 else '>'} 1 ms; socket/HTTP p50 ratio {p50 / h50:.2f}")


def megabyte_text(seed: int = 13) -> str:
    rng = random.Random(seed)
    words = [w for w in (ROOT / "README.md").read_text().split() if w.isalpha()] or ["word"]
    paragraphs, size = [], 0
    while size < 1_000_000:
        lines = [" ".join(rng.choice(words) for _ in range(rng.randint(4, 30))) for _ in range(rng.randint(1, 12))]
        # Some paragraphs are much longer than a chunk, so every separator level is used.
        if rng.random() < 0.05:
            lines = [" ".join(rng.choice(words) for _ in range(rng.randint(800, 1500)))]
        paragraph = "\n".join(lines)
        paragraphs.append(paragraph)
        size += len(paragraph) + 2
    return "\n\n".join(paragraphs)[:1_000_000]


def bench_split(rounds: int) -> None:
    text = megabyte_text()
    try:
        from langchain_text_splitters import RecursiveCharacterTextSplitter
    except ImportError:
        RecursiveCharacterTextSplitter = None
    ours_s, theirs_s = [], []
    ours = theirs = None
    for _ in range(rounds):
        started = time.perf_counter()
        ours = split_text(text)
        ours_s.append(time.perf_counter() - started)
        if RecursiveCharacterTextSplitter is not None:
            splitter = RecursiveCharacterTextSplitter(chunk_size=4000, chunk_overlap=200,
                                                      separators=["\n\n", "\n", " ", ""])
            started = time.perf_counter()
            theirs = splitter.split_text(text)
            theirs_s.append(time.perf_counter() - started)
    print(f"\n2. split_text of {len(text):,} characters, median of {rounds}")
    print("| splitter | ms | chunks |\n|---|---|---|")
    print(f"| ours (inference/runtime/splitter.py) | {statistics.median(ours_s) * 1000:.1f} | {len(ours)} |")
    if theirs is None:
        print("LangChain's splitter is not installed (pip install -e .[bench]): no comparison.")
        return
    print(f"| LangChain RecursiveCharacterTextSplitter | {statistics.median(theirs_s) * 1000:.1f} | {len(theirs)} |")
    stripped = [chunk.strip() for chunk in ours]
    same = sum(a == b for a, b in zip(stripped, theirs, strict=False))
    print(f"ours/theirs time ratio {statistics.median(ours_s) / statistics.median(theirs_s):.2f}; "
          f"{same} of {len(theirs)} chunks identical once ours are stripped"
          f"{' (all)' if stripped == theirs else ''}")


def tokens_over_socket(ws, request_id: int, max_tokens: int, seed: int) -> tuple[int, float]:
    started = time.perf_counter()
    ws.send(json.dumps({"id": request_id, "type": "call_method", "component_name": "bench-lm", "method": "infer",
                        "input": {"messages": PROMPT, "max_tokens": max_tokens, "temperature": 0.7, "seed": seed}}))
    tokens = 0
    while True:
        packet = json.loads(ws.recv())
        if packet["status"] != "ok":
            raise RuntimeError(packet)
        if packet.get("body", {}).get("message", {}).get("content", [{}])[0].get("text"):
            tokens += 1
        if packet["finish"]:
            return tokens, time.perf_counter() - started


def tokens_over_sse(url: str, api_key: str | None, model: str, max_tokens: int, seed: int) -> tuple[int, float]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=600)
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {api_key}"} if api_key else {})}
    body = {"model": model, "messages": PROMPT, "max_tokens": max_tokens, "temperature": 0.7, "seed": seed,
            "stream": True}
    started = time.perf_counter()
    conn.request("POST", "/v1/chat/completions", body=json.dumps(body), headers=headers)
    resp = conn.getresponse()
    tokens = 0
    for line in resp:
        line = line.strip()
        if not line.startswith(b"data:") or line == b"data: [DONE]":
            continue
        for choice in json.loads(line[5:]).get("choices") or []:
            if (choice.get("delta") or {}).get("content"):
                tokens += 1
    elapsed = time.perf_counter() - started
    conn.close()
    return tokens, elapsed


def bench_model(url: str, api_key: str | None, model: str, rounds: int, max_tokens: int) -> None:
    ws = socket_for(url, api_key)
    ws.send(json.dumps({"id": "d", "type": "delete_component", "component_name": "bench-lm"}))
    ws.recv()
    ws.send(json.dumps({"id": "d", "type": "define_component", "component_type": "language_model",
                        "component_name": "bench-lm", "attrs": {"model": model}}))
    assert json.loads(ws.recv())["status"] == "ok"
    tokens_over_socket(ws, 0, 8, 0)  # warm-up
    runtime_rates, sse_rates = [], []
    for i in range(rounds):
        n, s = tokens_over_socket(ws, i + 1, max_tokens, 42 + i)
        runtime_rates.append(n / s)
        n, s = tokens_over_sse(url, api_key, model, max_tokens, 42 + i)
        sse_rates.append(n / s)
    ws.send(json.dumps({"id": "x", "type": "delete_component", "component_name": "bench-lm"}))
    ws.recv()
    ws.close()
    ours, theirs = statistics.median(runtime_rates), statistics.median(sse_rates)
    print(f"\n3. {model}, max_tokens {max_tokens}, median of {rounds} interleaved rounds")
    print("| path | tokens/s |\n|---|---|")
    print(f"| call_iter_method over /ws/runtime/ | {ours:.1f} |")
    print(f"| /v1/chat/completions streaming | {theirs:.1f} |")
    print(f"runtime/SSE ratio {ours / theirs * 100:.1f} % (target >= 95 %)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="a running gateway; default: start the embedded one")
    parser.add_argument("--api-key", default=os.environ.get("SWITCHBOARD_API_KEY"))
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--echo-requests", type=int, default=2000)
    parser.add_argument("--split-rounds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3, help="model rounds")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--skip-model", action="store_true", help="echo and split_text only")
    args = parser.parse_args()
    bench_split(args.split_rounds)
    server = data = None
    url = args.url
    try:
        if url is None:
            server, url, data = start_gateway(threads=int(os.environ.get("LLAMACPP_THREADS", "2")),
                                              n_ctx=int(os.environ.get("LLAMACPP_CONTEXT", "2048")))
        bench_echo(url, args.api_key, args.echo_requests)
        if not args.skip_model:
            bench_model(url, args.api_key, args.model, args.rounds, args.max_tokens)
    finally:
        if server is not None:
            server.terminate()
            server.wait(20)
        if data is not None:
            data.cleanup()


if __name__ == "__main__":
    main()
