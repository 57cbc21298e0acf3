"""A small real GPU engine speaking the part of SGLang's HTTP API that Switchboard and the bench use.

    python bench/gpu_engine.py --port 30000 [--tokenizer tokenizer.json] [--max-slots 128] [--self-check]

Why it exists: SGLang itself cannot be installed on the lent GPU machine (no registry there, and its
kernels are hundreds of MB built for one torch version), so bench/queued_vs_direct.py is pointed at this
instead. It is a genuine engine, not a timer: a Llama with SmolLM2-135M's shapes (hidden 576, 30 layers,
9 heads, 3 KV heads, MLP 1536, vocab 49152, tied embeddings) runs in bf16 on the GPU with a KV cache of
`--max-slots` sequences; requests are admitted continuously (batched prefill), and every decode step
advances all running sequences at once, replaying a CUDA graph captured per batch-size bucket, the
way SGLang runs its decode. Weights are random (seeded), so answers are gibberish: with ignore_eos and a
fixed max_tokens the work per token is that of the real model. Decoding is greedy.

API: GET /health, /health_generate, /get_model_info, /v1/models, /get_load, /stats;
POST /v1/chat/completions (stream or not; max_tokens, ignore_eos, stream_options.include_usage).
"""

from __future__ import annotations

import argparse
import asyncio
import codecs
import json
import queue
import threading
import time
from dataclasses import dataclass, field

import torch
from aiohttp import web

try:
    import orjson

    dumps, loads = orjson.dumps, orjson.loads
except ImportError:  # the engine runs without the gateway's wheels too
    def dumps(obj) -> bytes:
        return json.dumps(obj, separators=(",", ":")).encode()

    loads = json.loads


@dataclass
class ModelShape:
    hidden: int = 576
    layers: int = 30
    heads: int = 9
    kv_heads: int = 3
    intermediate: int = 1536
    vocab: int = 49152
    rope_theta: float = 100000.0
    eps: float = 1e-5

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads


class Llama:
    """Weights, KV cache and the two forward passes (batched prefill; one decode step for slots 0..B-1)."""

    def __init__(self, shape: ModelShape, *, max_slots: int, max_len: int, device: str, dtype: torch.dtype,
                 seed: int, fused: bool = True):
        self.s, self.max_slots, self.max_len, self.device, self.dtype = shape, max_slots, max_len, device, dtype
        # fused: torch's rms_norm and SDPA for decode attention; else plain tensor ops (the fallback).
        self.fused = fused
        gen = torch.Generator(device=device).manual_seed(seed)
        hd, h = shape.head_dim, shape.hidden

        def w(*dims: int) -> torch.Tensor:
            return (torch.randn(*dims, generator=gen, device=device, dtype=torch.float32) * 0.02).to(dtype)

        def ones(n: int) -> torch.Tensor:
            return torch.ones(n, device=device, dtype=dtype)

        self.embed = w(shape.vocab, h)  # tied with the LM head, as in SmolLM2
        self.layers = [
            {"attn_norm": ones(h), "wqkv": w(h, (shape.heads + 2 * shape.kv_heads) * hd), "wo": w(shape.heads * hd, h),
             "ffn_norm": ones(h), "w_gate_up": w(h, 2 * shape.intermediate), "w_down": w(shape.intermediate, h)}
            for _ in range(shape.layers)
        ]
        self.final_norm = ones(h)
        # (layer, slot, kv head, position, head dim): a slot's keys of one head are contiguous.
        cache = (shape.layers, max_slots, shape.kv_heads, max_len, hd)
        self.k_cache = torch.zeros(cache, device=device, dtype=dtype)
        self.v_cache = torch.zeros(cache, device=device, dtype=dtype)
        inv = 1.0 / (shape.rope_theta ** (torch.arange(0, hd, 2, device=device, dtype=torch.float32) / hd))
        angles = torch.outer(torch.arange(max_len, device=device, dtype=torch.float32), inv)
        # RoPE on adjacent pairs as complex numbers (llama.cpp's layout; with random weights either is right).
        self.freqs = torch.polar(torch.ones_like(angles), angles)  # (max_len, hd / 2) complex64
        self.positions = torch.arange(max_len, device=device)

    def rms(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        if self.fused:
            return torch.nn.functional.rms_norm(x, (self.s.hidden,), weight, self.s.eps)
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.s.eps)).to(self.dtype) * weight

    def decode_attention(self, q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                         mask: torch.Tensor) -> torch.Tensor:
        """q (B, kv heads, group, hd): a KV head's query heads ride as its query rows (GQA, no copies)."""
        if self.fused:
            return torch.nn.functional.scaled_dot_product_attention(q, keys, values, attn_mask=mask)
        scores = (q @ keys.transpose(-1, -2)).float() * (q.shape[-1] ** -0.5)
        scores = scores.masked_fill(~mask, float("-inf"))
        return scores.softmax(-1).to(self.dtype) @ values

    def rope(self, x: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
        xc = torch.view_as_complex(x.float().unflatten(-1, (-1, 2)))
        return torch.view_as_real(xc * freqs).flatten(-2).to(self.dtype)

    def _split_qkv(self, h: torch.Tensor, layer: dict,
                   freqs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q (..., heads, hd) and k, v (..., kv heads, hd), q and k rotated in one pass."""
        s, hd = self.s, self.s.head_dim
        qkv = h @ layer["wqkv"]
        qk = self.rope(qkv[..., : (s.heads + s.kv_heads) * hd].unflatten(-1, (s.heads + s.kv_heads, hd)), freqs)
        v = qkv[..., (s.heads + s.kv_heads) * hd:].unflatten(-1, (s.kv_heads, hd))
        return qk[..., : s.heads, :], qk[..., s.heads:, :], v

    def _mlp(self, x: torch.Tensor, layer: dict) -> torch.Tensor:
        gate, up = (self.rms(x, layer["ffn_norm"]) @ layer["w_gate_up"]).chunk(2, dim=-1)
        act = torch.nn.functional.silu(gate) * up
        if x.dim() == 2:  # decode: the residual add rides in the matmul's epilogue
            return torch.addmm(x, act, layer["w_down"])
        return x + act @ layer["w_down"]

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return (self.rms(x, self.final_norm) @ self.embed.T).float()

    @torch.inference_mode()
    def prefill(self, tokens: torch.Tensor, lengths: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
        """Right-padded prompts (B, P) into `slots`; the logits at each prompt's last token (B, vocab)."""
        s = self.s
        b, p = tokens.shape
        group = s.heads // s.kv_heads
        freqs = self.freqs[:p][:, None, :]
        x = self.embed[tokens]
        for i, layer in enumerate(self.layers):
            q, k, v = self._split_qkv(self.rms(x, layer["attn_norm"]), layer, freqs)
            k, v = k.transpose(1, 2), v.transpose(1, 2)  # (B, kv heads, P, hd)
            self.k_cache[i][slots, :, :p] = k
            self.v_cache[i][slots, :, :p] = v
            # Padding sits after each prompt, so a causal mask keeps it out of every real token's view.
            att = torch.nn.functional.scaled_dot_product_attention(
                q.transpose(1, 2), k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1),
                is_causal=True)
            x = x + att.transpose(1, 2).flatten(-2) @ layer["wo"]
            x = self._mlp(x, layer)
        return self.logits(x[torch.arange(b, device=x.device), lengths - 1])

    @torch.inference_mode()
    def decode(self, tokens: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """One step for slots 0..B-1: token i sits at position pos[i] of slot i. Logits (B, vocab).

        Static shapes only (attention always spans max_len, masked), so it can be captured in a graph.
        """
        s = self.s
        b = tokens.shape[0]
        group, hd = s.heads // s.kv_heads, s.head_dim
        rows = torch.arange(b, device=tokens.device)
        freqs = self.freqs[pos][:, None, :]
        # (B, 1, 1, L): a slot sees its own positions 0..pos.
        mask = (self.positions[None, :] <= pos[:, None])[:, None, None, :]
        x = self.embed[tokens]
        for i, layer in enumerate(self.layers):
            q, k, v = self._split_qkv(self.rms(x, layer["attn_norm"]), layer, freqs)
            self.k_cache[i][rows, :, pos] = k  # (B, kv heads, hd) into each slot's position
            self.v_cache[i][rows, :, pos] = v
            att = self.decode_attention(q.reshape(b, s.kv_heads, group, hd), self.k_cache[i, :b],
                                        self.v_cache[i, :b], mask)
            x = torch.addmm(x, att.reshape(b, s.heads * hd), layer["wo"])
            x = self._mlp(x, layer)
        return self.logits(x)


class DecodeRunner:
    """Decode steps through CUDA graphs, one per power-of-two batch bucket (eager where graphs are off)."""

    def __init__(self, model: Llama, *, graphs: bool):
        self.model = model
        self.tok = torch.zeros(model.max_slots, dtype=torch.long, device=model.device)
        self.pos = torch.zeros(model.max_slots, dtype=torch.long, device=model.device)
        self.buckets = [b for b in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512) if b < model.max_slots]
        self.buckets.append(model.max_slots)
        self.graphs: dict[int, tuple[torch.cuda.CUDAGraph, torch.Tensor]] = {}
        # Waiting on an event lets go of the GIL (a bare .tolist() would hold it while the GPU works),
        # so the HTTP side keeps streaming during each step.
        self.done = torch.cuda.Event() if model.device.startswith("cuda") else None
        if graphs:
            self._capture()

    def _capture(self) -> None:
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for b in self.buckets:  # lazy library set-up (cuBLAS handles, workspaces) happens here
                for _ in range(2):
                    self.model.decode(self.tok[:b], self.pos[:b])
        torch.cuda.current_stream().wait_stream(stream)
        pool = None
        for b in reversed(self.buckets):  # largest first, so the smaller ones fit in its memory pool
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=pool):
                out = self.model.decode(self.tok[:b], self.pos[:b]).argmax(-1)
            pool = graph.pool()
            self.graphs[b] = (graph, out)

    def bucket(self, n: int) -> int:
        return next(b for b in self.buckets if b >= n)

    def step(self, tokens: list[int], positions: list[int]) -> list[int]:
        """Next token of slots 0..len(tokens)-1 (free slots carry token 0 at position 0: harmless)."""
        n = len(tokens)
        b = self.bucket(n)
        host = torch.tensor([tokens + [0] * (b - n), positions + [0] * (b - n)], dtype=torch.long)
        staged = host.to(self.model.device, non_blocking=False)
        self.tok[:b].copy_(staged[0])
        self.pos[:b].copy_(staged[1])
        if b in self.graphs:
            graph, out = self.graphs[b]
            graph.replay()
        else:
            out = self.model.decode(self.tok[:b], self.pos[:b]).argmax(-1)
        if self.done is not None:
            self.done.record()
            self.done.synchronize()
        return out[:n].tolist()


@dataclass(eq=False)
class Request:
    prompt: list[int]
    max_tokens: int
    ignore_eos: bool
    loop: asyncio.AbstractEventLoop
    out: asyncio.Queue = field(default_factory=asyncio.Queue)
    slot: int = -1
    pos: int = 0
    last: int = 0
    generated: int = 0
    cancelled: bool = False


class Scheduler(threading.Thread):
    """Continuous batching: admit waiting requests (one batched prefill), then one decode step for all."""

    def __init__(self, model: Llama, runner: DecodeRunner, *, eos_id: int, max_prefill: int):
        super().__init__(daemon=True, name="scheduler")
        self.model, self.runner, self.eos_id, self.max_prefill = model, runner, eos_id, max_prefill
        self.inbox: queue.Queue[Request] = queue.Queue()
        self.waiting: list[Request] = []
        self.slots: list[Request | None] = [None] * model.max_slots
        self.stats = {"requests": 0, "completed": 0, "aborted": 0, "steps": 0, "decode_tokens": 0,
                      "decode_s": 0.0, "prefills": 0, "prefill_s": 0.0, "max_batch": 0}

    def running(self) -> list[Request]:
        return [r for r in self.slots if r is not None]

    def _emit(self, events: list[tuple[Request, int, str | None]]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list] = {}
        for event in events:
            by_loop.setdefault(event[0].loop, []).append(event)
        for loop, batch in by_loop.items():
            loop.call_soon_threadsafe(_deliver, batch)

    def _advance(self, req: Request, token: int, events: list) -> None:
        req.generated += 1
        req.last = token
        req.pos += 1
        finish = None
        if req.generated >= req.max_tokens or req.pos >= self.model.max_len - 1:
            finish = "length"
        elif token == self.eos_id and not req.ignore_eos:
            finish = "stop"
        events.append((req, token, finish))
        if finish:
            self.slots[req.slot] = None
            self.stats["completed"] += 1

    def _admit(self, events: list) -> None:
        while True:
            try:
                self.waiting.append(self.inbox.get_nowait())
            except queue.Empty:
                break
        self.waiting = [r for r in self.waiting if not r.cancelled]
        free = [i for i, r in enumerate(self.slots) if r is None]
        batch = self.waiting[: min(len(free), self.max_prefill)]
        if not batch:
            return
        self.waiting = self.waiting[len(batch):]
        started = time.perf_counter()
        width = max(len(r.prompt) for r in batch)
        tokens = torch.tensor([r.prompt + [0] * (width - len(r.prompt)) for r in batch], dtype=torch.long)
        lengths = torch.tensor([len(r.prompt) for r in batch], dtype=torch.long)
        for req, slot in zip(batch, free, strict=False):
            req.slot, req.pos = slot, len(req.prompt) - 1
            self.slots[slot] = req
        dev = self.model.device
        first = self.model.prefill(tokens.to(dev), lengths.to(dev),
                                   torch.tensor([r.slot for r in batch], device=dev)).argmax(-1).tolist()
        for req, token in zip(batch, first, strict=True):
            self._advance(req, token, events)
        self.stats["prefills"] += 1
        self.stats["prefill_s"] += time.perf_counter() - started

    def run(self) -> None:
        while True:
            if not self.running() and not self.waiting:
                self.inbox.put(self.inbox.get())  # sleep until a request arrives
            events: list = []
            for i, req in enumerate(self.slots):
                if req is not None and req.cancelled:
                    self.slots[i] = None
                    self.stats["aborted"] += 1
            self._admit(events)
            live = self.running()
            if live:
                top = max(r.slot for r in live) + 1
                tokens, positions = [0] * top, [0] * top
                for r in live:
                    tokens[r.slot], positions[r.slot] = r.last, r.pos
                started = time.perf_counter()
                nxt = self.runner.step(tokens, positions)
                self.stats["decode_s"] += time.perf_counter() - started
                self.stats["steps"] += 1
                self.stats["decode_tokens"] += len(live)
                self.stats["max_batch"] = max(self.stats["max_batch"], len(live))
                for r in live:
                    self._advance(r, nxt[r.slot], events)
            if events:
                self._emit(events)


def _deliver(batch: list[tuple[Request, int, str | None]]) -> None:
    for req, token, finish in batch:
        req.out.put_nowait((token, finish))


class Detokenizer:
    """Token id -> bytes through the byte-level BPE table; text comes out as whole UTF-8 characters."""

    def __init__(self, path: str | None, vocab: int):
        self.encode_fn = None
        self.special: dict[str, int] = {}
        if not path:
            self.pieces = [f"tok{i} ".encode() for i in range(vocab)]
            return
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(path)
        byte_of = _gpt2_unicode_to_byte()
        self.pieces = [b""] * vocab
        for piece, idx in tok.get_vocab(with_added_tokens=False).items():
            if idx < vocab:
                self.pieces[idx] = bytes(byte_of.get(ch, 32) for ch in piece)
        for piece, idx in tok.get_vocab(with_added_tokens=True).items():
            if piece.startswith("<|") and idx < vocab:
                self.special[piece] = idx
                self.pieces[idx] = b""  # SGLang skips special tokens when detokenizing
        self.encode_fn = tok.encode

    def encode_chat(self, messages: list[dict]) -> list[int]:
        text = "".join(f"<|im_start|>{m.get('role', 'user')}\n{m.get('content') or ''}<|im_end|>\n"
                       for m in messages) + "<|im_start|>assistant\n"
        if self.encode_fn is None:
            return [b % 1000 + 100 for b in text.encode()][:256]
        return self.encode_fn(text).ids


def _gpt2_unicode_to_byte() -> dict[str, int]:
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs, strict=True)}


class Server:
    def __init__(self, scheduler: Scheduler, detok: Detokenizer, *, model_name: str, default_tokens: int):
        self.scheduler, self.detok, self.model_name, self.default_tokens = (
            scheduler, detok, model_name, default_tokens)
        self.counter = 0

    async def health(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def model_info(self, request: web.Request) -> web.Response:
        return web.json_response({"model_path": self.model_name, "is_generation": True})

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": self.model_name, "object": "model"}]})

    async def get_load(self, request: web.Request) -> web.Response:
        s = self.scheduler
        return web.json_response([{"dp_rank": 0, "num_reqs": len(s.running()), "num_waiting_reqs": len(s.waiting),
                                   "num_tokens": sum(r.pos for r in s.running())}])

    async def get_stats(self, request: web.Request) -> web.Response:
        st = dict(self.scheduler.stats)
        st["decode_ms_per_step"] = 1000 * st["decode_s"] / max(st["steps"], 1)
        st["mean_batch"] = st["decode_tokens"] / max(st["steps"], 1)
        st["graphs"] = sorted(self.scheduler.runner.graphs)
        return web.json_response(st)

    async def chat(self, request: web.Request) -> web.StreamResponse:
        try:
            body = loads(await request.read())
            messages = body["messages"]
            prompt = self.detok.encode_chat(messages)
            max_tokens = int(body.get("max_tokens") or body.get("max_completion_tokens") or self.default_tokens)
        except (ValueError, KeyError, TypeError) as exc:
            return web.json_response({"error": {"message": f"bad request: {exc}", "type": "invalid_request"}},
                                     status=400)
        if not prompt or len(prompt) + max_tokens >= self.scheduler.model.max_len or max_tokens < 1:
            return web.json_response({"error": {"message": "prompt + max_tokens exceed the context length",
                                                "type": "invalid_request"}}, status=400)
        self.counter += 1
        rid = f"chatcmpl-{self.counter}"
        model = body.get("model") or self.model_name
        req = Request(prompt=prompt, max_tokens=max_tokens, ignore_eos=bool(body.get("ignore_eos")),
                      loop=asyncio.get_running_loop())
        self.scheduler.stats["requests"] += 1
        self.scheduler.inbox.put(req)
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        pieces = self.detok.pieces
        try:
            if not body.get("stream"):
                text, finish = [], None
                while finish is None:
                    token, finish = await req.out.get()
                    text.append(decoder.decode(pieces[token]))
                usage = {"prompt_tokens": len(prompt), "completion_tokens": req.generated,
                         "total_tokens": len(prompt) + req.generated}
                return web.json_response({
                    "id": rid, "object": "chat.completion", "created": int(time.time()), "model": model,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(text)},
                                 "finish_reason": finish}], "usage": usage})
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
            await resp.prepare(request)
            created = int(time.time())
            finish = None
            while finish is None:
                token, finish = await req.out.get()
                out = []
                text = decoder.decode(pieces[token])
                # Tokens that arrived meanwhile go out in the same write, still one event per token.
                while True:
                    if text:
                        out.append(b"data: " + dumps({
                            "id": rid, "object": "chat.completion.chunk", "created": created, "model": model,
                            "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]})
                            + b"\n\n")
                    if finish is not None or req.out.empty():
                        break
                    token, finish = req.out.get_nowait()
                    text = decoder.decode(pieces[token])
                if finish is not None:
                    out.append(b"data: " + dumps({
                        "id": rid, "object": "chat.completion.chunk", "created": created, "model": model,
                        "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]}) + b"\n\n")
                    if (body.get("stream_options") or {}).get("include_usage"):
                        usage = {"prompt_tokens": len(prompt), "completion_tokens": req.generated,
                                 "total_tokens": len(prompt) + req.generated}
                        out.append(b"data: " + dumps({"id": rid, "object": "chat.completion.chunk",
                                                      "created": created, "model": model, "choices": [],
                                                      "usage": usage}) + b"\n\n")
                    out.append(b"data: [DONE]\n\n")
                if out:
                    await resp.write(b"".join(out))
            return resp
        finally:
            req.cancelled = True  # a no-op once finished; frees the slot when the client went away


def make_app(server: Server) -> web.Application:
    app = web.Application()
    for path in ("/health", "/health_generate"):
        app.router.add_get(path, server.health)
    app.router.add_get("/get_model_info", server.model_info)
    app.router.add_get("/v1/models", server.models)
    app.router.add_get("/get_load", server.get_load)
    app.router.add_get("/stats", server.get_stats)
    app.router.add_post("/v1/chat/completions", server.chat)
    return app


def self_check(model: Llama, runner: DecodeRunner, steps: int = 6) -> float:
    """Cached decode (graph path) vs recomputing the whole sequence: the largest relative logit error."""
    gen = torch.Generator().manual_seed(1)
    prompts = [torch.randint(0, model.s.vocab, (n,), generator=gen).tolist() for n in (5, 11, 8)]
    seqs = [list(p) for p in prompts]
    width = max(map(len, prompts))
    dev = model.device
    tokens = torch.tensor([p + [0] * (width - len(p)) for p in prompts], device=dev)
    lengths = torch.tensor([len(p) for p in prompts], device=dev)
    nxt = model.prefill(tokens, lengths, torch.arange(3, device=dev)).argmax(-1).tolist()
    worst = 0.0
    for _ in range(steps):
        for s, t in zip(seqs, nxt, strict=True):
            s.append(t)
        positions = [len(s) - 1 for s in seqs]
        nxt = runner.step([s[-1] for s in seqs], positions)
        graph_logits = model.decode(torch.tensor([s[-1] for s in seqs], device=dev),
                                    torch.tensor(positions, device=dev))
        for i, s in enumerate(seqs):  # recompute each sequence from scratch in a spare slot
            ref = model.prefill(torch.tensor([s], device=dev), torch.tensor([len(s)], device=dev),
                                torch.tensor([model.max_slots - 1], device=dev))[0]
            err = ((graph_logits[i] - ref).norm() / ref.norm()).item()
            if not err == err:  # NaN: max() would silently drop it
                raise SystemExit(f"self-check: non-finite logits (decode finite: "
                                 f"{bool(torch.isfinite(graph_logits[i]).all())}, recompute finite: "
                                 f"{bool(torch.isfinite(ref).all())})")
            worst = max(worst, err)
            if nxt[i] != int(graph_logits[i].argmax()):
                print(f"self-check: graph replay and eager decode picked different tokens in slot {i}")
    return worst


def diagnose(model: Llama) -> None:
    """Each fused op of the decode step against plain float32 arithmetic, on fresh random inputs."""
    s, dev, b, hd = model.s, model.device, 3, model.s.head_dim
    g = s.heads // s.kv_heads

    def report(name: str, got: torch.Tensor, ref: torch.Tensor) -> None:
        err = ((got.float() - ref).norm() / ref.norm()).item()
        print(f"diag {name:10} finite={bool(torch.isfinite(got).all())} rel_err={err:.2e}", flush=True)

    x = torch.randn(b, s.hidden, device=dev).to(model.dtype)
    w = (1 + 0.1 * torch.randn(s.hidden, device=dev)).to(model.dtype)
    xf = x.float()
    report("rms_norm", model.rms(x, w), xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + s.eps) * w.float())
    q = torch.randn(b, s.kv_heads, g, hd, device=dev).to(model.dtype)
    keys = torch.randn(b, s.kv_heads, model.max_len, hd, device=dev).to(model.dtype)
    values = torch.randn(b, s.kv_heads, model.max_len, hd, device=dev).to(model.dtype)
    pos = torch.tensor([3, 100, model.max_len - 1], device=dev)
    mask = (model.positions[None, :] <= pos[:, None])[:, None, None, :]
    scores = (q.float() @ keys.float().transpose(-1, -2)) * hd ** -0.5
    ref = scores.masked_fill(~mask, float("-inf")).softmax(-1) @ values.float()
    with torch.inference_mode():
        report("attention", model.decode_attention(q, keys, values, mask), ref)
    freqs = model.freqs[pos][:, None, :]
    qk = torch.randn(b, s.heads + s.kv_heads, hd, device=dev).to(model.dtype)
    pairs = qk.float().unflatten(-1, (-1, 2))
    cos, sin = freqs.real, freqs.imag
    rot = torch.stack([pairs[..., 0] * cos - pairs[..., 1] * sin, pairs[..., 0] * sin + pairs[..., 1] * cos], -1)
    report("rope", model.rope(qk, freqs), rot.flatten(-2))


def microbench(model: Llama, runner: DecodeRunner, steps: int = 300) -> None:
    """The engine with no HTTP in front: decode steps per second at a few batch sizes (positions ~300)."""
    print(f"{'batch':>5} {'step ms':>8} {'GPU-only ms':>11} {'tok/s':>9}", flush=True)
    for b in (1, 16, 64, 128):
        if b > model.max_slots:
            continue
        tokens = torch.randint(0, model.s.vocab, (b,)).tolist()
        positions = [min(300, model.max_len - 2)] * b
        for _ in range(10):
            runner.step(tokens, positions)
        torch.cuda.synchronize() if model.device.startswith("cuda") else None
        started = time.perf_counter()
        for _ in range(steps):
            runner.step(tokens, positions)
        step_ms = 1000 * (time.perf_counter() - started) / steps
        gpu_ms = float("nan")
        bucket = runner.bucket(b)
        if bucket in runner.graphs:  # replays alone, timed with CUDA events
            graph = runner.graphs[bucket][0]
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(steps):
                graph.replay()
            end.record()
            end.synchronize()
            gpu_ms = start.elapsed_time(end) / steps
        print(f"{b:>5} {step_ms:>8.3f} {gpu_ms:>11.3f} {b / step_ms * 1000:>9.0f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=30000)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--tokenizer", help="a tokenizer.json (SmolLM2's); default: synthetic 'tokN' pieces")
    parser.add_argument("--served-model-name", default="smollm2-135m-shape-random")
    parser.add_argument("--max-slots", type=int, default=128)
    parser.add_argument("--max-len", type=int, default=1024)
    parser.add_argument("--max-prefill", type=int, default=64, help="most prompts in one batched prefill")
    parser.add_argument("--tokens", type=int, default=128, help="answer length when max_tokens is unset")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--no-graphs", action="store_true")
    parser.add_argument("--self-check", action="store_true", help="check cached decode against recompute, exit")
    parser.add_argument("--microbench", action="store_true", help="time bare decode steps (no HTTP), exit")
    parser.add_argument("--plain-ops", action="store_true",
                        help="plain tensor ops instead of torch's fused rms_norm and SDPA in decode")
    parser.add_argument("--layers", type=int, default=30, help="fewer only for CPU smoke tests")
    args = parser.parse_args()

    started = time.perf_counter()
    shape = ModelShape(layers=args.layers)
    model = Llama(shape, max_slots=args.max_slots, max_len=args.max_len, device=args.device,
                  dtype=getattr(torch, args.dtype), seed=0, fused=not args.plain_ops)
    runner = DecodeRunner(model, graphs=args.device.startswith("cuda") and not args.no_graphs)
    params = sum(t.numel() for t in [model.embed, model.final_norm, *(v for lay in model.layers for v in lay.values())])
    print(f"engine: {params / 1e6:.1f}M parameters, {args.dtype} on {args.device}, "
          f"{'plain' if args.plain_ops else 'fused'} ops, "
          f"{args.max_slots} slots x {args.max_len} positions, graphs for batch {sorted(runner.graphs) or 'none'}, "
          f"ready in {time.perf_counter() - started:.1f}s", flush=True)
    if args.self_check:
        diagnose(model)
        err = self_check(model, runner)
        print(f"self-check: cached decode vs recompute, worst relative logit error {err:.2e}", flush=True)
        if err > 3e-2:
            raise SystemExit("self-check failed")
    if args.microbench:
        microbench(model, runner)
    if args.self_check or args.microbench:
        return
    detok = Detokenizer(args.tokenizer, shape.vocab)
    eos = detok.special.get("<|im_end|>", 2)
    scheduler = Scheduler(model, runner, eos_id=eos, max_prefill=args.max_prefill)
    scheduler.start()
    server = Server(scheduler, detok, model_name=args.served_model_name, default_tokens=args.tokens)
    web.run_app(make_app(server), host=args.host, port=args.port, print=None, access_log=None,
                handler_cancellation=True)


if __name__ == "__main__":
    main()
