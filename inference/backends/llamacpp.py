"""The built-in CPU model: a GGUF file run in-process by llama-cpp-python.

One `Llama` per model file per process, loaded lazily on first use and shared by every block
on that file: a block's `n_ctx` is a limit on its own requests, the instance's context is the
largest any of its blocks asks for (capped by LLAMACPP_MAX_CONTEXT), and `n_threads` is set per
generation. A model is kept while a live backend uses it: a backend the factory retires (its block
changed or was deleted) releases its file, and a file no backend uses any more is dropped and freed
(llama.cpp frees the model and KV cache when the last reference goes). A llama.cpp context
(KV cache, sampler, batch) is not thread-safe, so generations on one model are serialized
by a lock: concurrent requests queue and run one after another. With 2 cores, running
them side by side would not be faster anyway; every stream gets the whole machine in turn.

Tokens are produced in a worker thread and handed to the event loop through an
asyncio.Queue (loop.call_soon_threadsafe), so the loop never waits on the model. The
thread checks a stop flag before every token: closing the async iterator stops the
generation within one token.
"""

from __future__ import annotations

import asyncio
import atexit
import codecs
import gc
import json
import secrets
import threading
import time
import weakref
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings

from inference.backends.base import BackendError, ChatDelta, ChatRequest, StreamingBackend, UnsupportedFeature
from inference.backends.content import flatten_content
from inference.backends.messages import chat_request_from_input
from registry.builtin import smollm2_gguf_path
from registry.server_code import llamacpp_config_refusal

# Sampling defaults where the request says nothing (llama.cpp's own defaults).
DEFAULT_TEMPERATURE = 0.8
DEFAULT_TOP_P = 0.95
DEFAULT_TOP_K = 40
DEFAULT_MIN_P = 0.05
# How long a waiting generation sleeps between looks at its stop flag while the model is busy.
_LOCK_POLL_S = 0.05
# OpenAI's (and llama_cpp.server's) default max_tokens for POST /v1/completions.
COMPLETION_MAX_TOKENS = 16
# /v1/completions parameters this backend cannot honour: refused, never silently ignored.
_UNSUPPORTED_COMPLETION = {"echo": False, "logprobs": None, "suffix": None, "best_of": 1}


@dataclass
class LoadedModel:
    llama: Any
    path: Path
    # The context it was loaded with: at least the n_ctx of every block that uses it.
    n_ctx: int = 0
    # Held for the whole of one generation: see the module docstring.
    lock: threading.Lock = field(default_factory=threading.Lock)
    formatter: Any = None
    # (completion tokens, seconds) of recent generations, for get_current_estimates.
    recent: deque = field(default_factory=lambda: deque(maxlen=20))
    generations: int = 0
    # Every token this model has generated in this process (only the generating thread writes it).
    tokens_total: int = 0


# Model file (resolved path) -> its one instance in this process.
_models: dict[str, LoadedModel] = {}
_models_lock = threading.Lock()
# Backends that have used a model and not been released: what keeps a model loaded.
_users: weakref.WeakSet[LlamaCppBackend] = weakref.WeakSet()
# Guards _users; taken inside _models_lock when both are needed, so a load never stalls a lookup.
_users_lock = threading.Lock()


@atexit.register
def _close_models() -> None:
    # Freed before interpreter teardown: llama.cpp's own __del__ fails once ctypes is half gone.
    for loaded in _models.values():
        loaded.llama.close()
    _models.clear()


def model_key(path: Path) -> str:
    return str(path.resolve())


def load_model(path: Path, *, n_threads: int, n_ctx: int) -> LoadedModel:
    """The process-wide model for this file, loaded on first call with a context of at least n_ctx.

    A request for a larger context than the loaded one replaces the instance (the old one is freed
    once the generations holding it end): one instance per file, never one per setting.
    """
    key = model_key(path)
    loaded = _models.get(key)
    if loaded is not None and loaded.n_ctx >= n_ctx:
        return loaded
    with _models_lock:
        loaded = _models.get(key)
        if loaded is None or loaded.n_ctx < n_ctx:
            size = max(n_ctx, loaded.n_ctx if loaded is not None else 0)
            # Dropped before the new one loads, so the two never sit in memory together needlessly.
            _models.pop(key, None)
            loaded = None
            gc.collect()
            loaded = _load(path, n_threads=n_threads, n_ctx=size)
            _models[key] = loaded
    return loaded


def collect_models() -> list[str]:
    """Drop every model no live, unreleased backend uses; returns the files dropped.

    The Llama is freed when the last reference goes: at once, or when a generation that still
    holds it ends. Nothing is closed explicitly here, so no thread can use a freed model.
    """
    with _models_lock, _users_lock:
        in_use = {backend.file_key for backend in list(_users) if backend.file_key is not None}
        dropped = [key for key in _models if key not in in_use]
        for key in dropped:
            del _models[key]
    if dropped:
        gc.collect()
    return dropped


def llama_cpp_set_threads(model: LoadedModel, n_threads: int) -> None:
    import llama_cpp

    if model.llama.context_params.n_threads != n_threads:
        llama_cpp.llama_set_n_threads(model.llama._ctx.ctx, n_threads, n_threads)
        model.llama.context_params.n_threads = n_threads
        model.llama.context_params.n_threads_batch = n_threads


def _load(path: Path, *, n_threads: int, n_ctx: int) -> LoadedModel:
    try:
        from llama_cpp import Llama
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter
    except ImportError as exc:
        raise BackendError("llama-cpp-python is not installed (pip install '.[llm]')", status=503,
                           code="backend_unavailable") from exc
    if not path.is_file():
        raise BackendError(f"model file {path} does not exist", status=503, code="backend_unavailable")
    try:
        llama = Llama(model_path=str(path), n_threads=n_threads, n_threads_batch=n_threads, n_ctx=n_ctx,
                      verbose=False)
    except (ValueError, RuntimeError) as exc:
        raise BackendError(f"llama.cpp could not load {path.name}: {exc}", status=503,
                           code="backend_unavailable") from exc
    template = llama.metadata.get("tokenizer.chat_template")
    if not template:
        raise BackendError(f"{path.name} carries no chat template", status=503, code="backend_unavailable")
    model = llama._model
    formatter = Jinja2ChatFormatter(
        template=template,
        eos_token=model.token_get_text(llama.token_eos()) if llama.token_eos() != -1 else "",
        bos_token=model.token_get_text(llama.token_bos()) if llama.token_bos() != -1 else "",
        add_generation_prompt=True,
    )
    return LoadedModel(llama=llama, path=path, n_ctx=n_ctx, formatter=formatter)


def normalize_messages(messages: list[dict[str, Any]]) -> list[dict[str, str]]:
    if not messages:
        raise BackendError("messages must not be empty", status=400, code="invalid_request_error")
    out = []
    for message in messages:
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise BackendError("each message needs a role", status=400, code="invalid_request_error")
        out.append({"role": message["role"], "content": flatten_content(message.get("content"))})
    return out


def render_prompt(model: LoadedModel, messages: list[dict[str, Any]]) -> str:
    """The GGUF's own chat template; a trailing assistant message is continued, not closed."""
    messages = normalize_messages(messages)
    prefill = ""
    if messages[-1]["role"] == "assistant":
        prefill = messages[-1]["content"]
        messages = messages[:-1]
        if not messages:
            raise BackendError("an assistant prefill needs a message before it", status=400,
                               code="invalid_request_error")
    return model.formatter(messages=messages).prompt + prefill


def tokenize_prompt(model: LoadedModel, prompt: str) -> list[int]:
    # add_bos only adds BOS when the vocabulary asks for it; special=True parses <|im_start|> etc.
    return model.llama.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)


class _StopScanner:
    """Holds back text that might be the start of a stop string, cuts at a full one."""

    def __init__(self, stops: list[str]):
        self.stops = [s for s in stops if s]
        self.pending = ""

    def feed(self, text: str) -> tuple[str, bool]:
        """(text safe to emit, whether a stop string was hit)."""
        self.pending += text
        if not self.stops:
            out, self.pending = self.pending, ""
            return out, False
        cut = min((self.pending.find(s) for s in self.stops if s in self.pending), default=-1)
        if cut >= 0:
            out, self.pending = self.pending[:cut], ""
            return out, True
        hold = 0
        for stop in self.stops:
            for size in range(min(len(stop) - 1, len(self.pending)), 0, -1):
                if self.pending.endswith(stop[:size]):
                    hold = max(hold, size)
                    break
        out = self.pending[: len(self.pending) - hold]
        self.pending = self.pending[len(out):]
        return out, False

    def flush(self) -> str:
        out, self.pending = self.pending, ""
        return out


def _grammar_for(response_format: dict[str, Any] | None):
    if not response_format:
        return None
    kind = response_format.get("type")
    if kind in (None, "text"):
        return None
    from llama_cpp.llama_grammar import JSON_GBNF, LlamaGrammar

    if kind == "json_object":
        return LlamaGrammar.from_string(JSON_GBNF, verbose=False)
    if kind == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema")
        if not isinstance(schema, dict):
            raise BackendError("response_format.json_schema.schema must be an object", status=400,
                               code="invalid_request_error")
        try:
            return LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)
        except (ValueError, RuntimeError) as exc:
            raise UnsupportedFeature(f"this JSON schema cannot be turned into a grammar: {exc}") from exc
    raise UnsupportedFeature(f"response_format type {kind!r} is not supported; use text, json_object "
                             "or json_schema")


@dataclass
class Generation:
    """One request's plan, checked before any thread starts."""

    prompt_tokens: list[int]
    max_tokens: int
    temperature: float
    top_p: float
    stop: list[str]
    seed: int | None
    grammar: Any


def completion_prompt(request: ChatRequest) -> str:
    """The one prompt string of a /v1/completions request (a list of one string is that string)."""
    prompt = request.prompt
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise UnsupportedFeature("the built-in model completes one prompt string; send 'prompt' as a string")
    for name, neutral in _UNSUPPORTED_COMPLETION.items():
        if request.extra.get(name, neutral) not in (neutral, None):
            raise UnsupportedFeature(f"the built-in model does not support '{name}' on /v1/completions")
    return prompt


class LlamaCppBackend(StreamingBackend):
    serves_completions = True

    def __init__(self, *, model_path: str | None = None, n_threads: int | None = None,
                 n_ctx: int | None = None):
        self.model_path = Path(model_path) if model_path else None
        self.n_threads = n_threads or settings.LLAMACPP_THREADS
        self.n_ctx = n_ctx or settings.LLAMACPP_CONTEXT
        self.last_thread: threading.Thread | None = None
        # The model file this backend holds loaded (set on first use, cleared by release()).
        self.file_key: str | None = None
        self.released = False

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> LlamaCppBackend:
        # timeout_s is the gateway's to enforce (a per-attempt limit, as for every backend).
        unknown = set(config) - {"model_path", "n_threads", "n_ctx", "timeout_s"}
        if unknown:
            raise BackendError(f"llamacpp backend config has unknown keys: {sorted(unknown)}", status=500,
                               code="backend_misconfigured")
        # Stored blocks may predate the operator's cap: it holds at load time too.
        refusal = llamacpp_config_refusal(config)
        if refusal is not None:
            raise BackendError(f"llamacpp backend refused: {refusal}", status=500, code="backend_misconfigured")
        return cls(model_path=config.get("model_path"), n_threads=config.get("n_threads"),
                   n_ctx=config.get("n_ctx"))

    def path(self) -> Path:
        if self.model_path is not None:
            return self.model_path
        try:
            # Looked up once per backend: it walks the package directory.
            self.model_path = smollm2_gguf_path()
        except (ImportError, FileNotFoundError) as exc:
            raise BackendError(f"the built-in model is not installed: {exc}", status=503,
                               code="backend_unavailable") from exc
        return self.model_path

    def model(self) -> LoadedModel:
        path = self.path()
        if not self.released:
            # Registered before loading, so a concurrent collect_models() never drops it midway.
            key = model_key(path)
            with _users_lock:
                self.file_key = key
                _users.add(self)
        return load_model(path, n_threads=self.n_threads, n_ctx=self.n_ctx)

    def release(self) -> None:
        """This backend is retired (its block changed or was deleted): free its model if no one else
        uses it. A request still running on it finishes; its model is dropped when it ends."""
        with _users_lock:
            self.released = True
            self.file_key = None
            _users.discard(self)
        collect_models()

    def count_tokens(self, messages: list[dict[str, Any]]) -> int:
        """Prompt tokens this model would see for these messages (the usage's prompt_tokens)."""
        model = self.model()
        return len(tokenize_prompt(model, render_prompt(model, messages)))

    async def acount_tokens(self, messages: list[dict[str, Any]]) -> int:
        """count_tokens for async callers: the first call loads the model, so keep it off the loop."""
        return await asyncio.to_thread(self.count_tokens, messages)

    async def acount_prompt_text(self, prompt: Any) -> int:
        """Tokens of a /v1/completions prompt (no chat template)."""
        request = ChatRequest(messages=[], model="", prompt=prompt)
        return await asyncio.to_thread(lambda: len(tokenize_prompt(self.model(), completion_prompt(request))))

    async def count_prompt_tokens(self, request: ChatRequest) -> int | None:
        if request.prompt is not None:
            return await self.acount_prompt_text(request.prompt)
        return await self.acount_tokens(request.messages)

    def plan(self, request: ChatRequest) -> Generation:
        if request.tools:
            raise UnsupportedFeature("the built-in model does not support tools (function calling); "
                                     "choose a block whose backend does")
        if request.n != 1:
            raise UnsupportedFeature("the built-in model returns one choice; n must be 1")
        model = self.model()
        if request.prompt is not None:
            prompt_tokens = tokenize_prompt(model, completion_prompt(request))
        else:
            prompt_tokens = tokenize_prompt(model, render_prompt(model, request.messages))
        room = self.n_ctx - len(prompt_tokens)
        if room <= 0:
            raise BackendError(f"the prompt is {len(prompt_tokens)} tokens; this model's context is "
                               f"{self.n_ctx}", status=400, code="context_length_exceeded")
        if request.max_tokens is not None and request.max_tokens < 1:
            raise BackendError("max_tokens must be at least 1", status=400, code="invalid_request_error")
        stop = request.stop or []
        if isinstance(stop, str):
            stop = [stop]
        default_max = COMPLETION_MAX_TOKENS if request.prompt is not None else settings.LLAMACPP_MAX_TOKENS
        return Generation(
            prompt_tokens=prompt_tokens,
            max_tokens=min(request.max_tokens or default_max, room),
            temperature=DEFAULT_TEMPERATURE if request.temperature is None else float(request.temperature),
            top_p=DEFAULT_TOP_P if request.top_p is None else float(request.top_p),
            stop=list(stop),
            seed=request.seed,
            grammar=_grammar_for(request.response_format),
        )

    def generate(self, plan: Generation, *, emit: Callable[[ChatDelta], None],
                 should_stop: Callable[[], bool]) -> None:
        """Run one generation in the calling thread, emitting deltas; the last one carries usage."""
        model = self.model()
        while not model.lock.acquire(timeout=_LOCK_POLL_S):
            if should_stop():
                return
        try:
            # The instance is shared: this block's thread count, set for this generation only.
            llama_cpp_set_threads(model, self.n_threads)
            self._generate_locked(model, plan, emit=emit, should_stop=should_stop)
        finally:
            model.lock.release()
            del model
            if self.released:
                # A retired backend's last request is done: what it kept loaded may go now.
                collect_models()

    def _generate_locked(self, model: LoadedModel, plan: Generation, *, emit: Callable[[ChatDelta], None],
                         should_stop: Callable[[], bool]) -> None:
        import llama_cpp

        llama = model.llama
        vocab = llama._model.vocab
        # A fixed seed reproduces; otherwise each generation draws a fresh one.
        llama.set_seed(plan.seed & 0xFFFFFFFF if plan.seed is not None else secrets.randbits(32))
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        scanner = _StopScanner(plan.stop)
        completion: list[int] = []
        finish = "length"
        started = time.perf_counter()
        model.generations += 1
        tokens: Iterator[int] = llama.generate(
            plan.prompt_tokens, top_k=DEFAULT_TOP_K, top_p=plan.top_p, min_p=DEFAULT_MIN_P,
            temp=plan.temperature, repeat_penalty=1.0, grammar=plan.grammar,
        )
        try:
            for token in tokens:
                if should_stop():
                    finish = "cancelled"
                    break
                if llama_cpp.llama_vocab_is_eog(vocab, token):
                    finish = "stop"
                    break
                completion.append(token)
                model.tokens_total += 1
                # One token's bytes; the incremental decoder joins UTF-8 sequences split across tokens.
                piece = llama.detokenize([token])
                text, hit = scanner.feed(decoder.decode(piece))
                if text:
                    emit(ChatDelta(content=text))
                if hit:
                    finish = "stop"
                    break
                if len(completion) >= plan.max_tokens:
                    break
        finally:
            tokens.close()
        elapsed = time.perf_counter() - started
        if completion:
            model.recent.append((len(completion), elapsed))
        if finish == "cancelled":
            return
        tail = scanner.flush() + decoder.decode(b"", final=True)
        usage = {"prompt_tokens": len(plan.prompt_tokens), "completion_tokens": len(completion),
                 "total_tokens": len(plan.prompt_tokens) + len(completion)}
        emit(ChatDelta(content=tail, finish_reason=finish, usage=usage))

    def stream_completion(self, request: ChatRequest) -> AsyncIterator[ChatDelta]:
        # The same generation as a chat, on the raw prompt: plan() tells the two apart by request.prompt.
        return self.stream_chat(request)

    async def stream_chat(self, request: ChatRequest) -> AsyncIterator[ChatDelta]:
        # Loading (first call) and tokenizing are quick but not free: keep them off the loop too.
        plan = await asyncio.to_thread(self.plan, request)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[ChatDelta | BaseException | None] = asyncio.Queue()
        stop = threading.Event()

        def put(item: ChatDelta | BaseException | None) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:
                # The loop is gone (the consumer's process is shutting down): nobody is listening.
                stop.set()

        def work() -> None:
            try:
                self.generate(plan, emit=put, should_stop=stop.is_set)
            except BaseException as exc:  # noqa: BLE001 - handed to the consumer, who re-raises it
                put(exc)
            else:
                put(None)

        thread = threading.Thread(target=work, name="llamacpp-generate", daemon=True)
        # Kept so a caller (and the cancellation test) can see the generation end.
        self.last_thread = thread
        thread.start()
        try:
            while True:
                item = await queue.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    if isinstance(item, BackendError):
                        raise item
                    raise BackendError(f"llama.cpp generation failed: {item}", status=500,
                                       code="backend_error") from item
                yield item
        finally:
            # The consumer left (finished, cancelled or aclose): the thread sees this before its next token.
            stop.set()

    # The seed's synchronous interface.
    def run_inference(self, input_data: dict) -> str:
        try:
            request = chat_request_from_input(input_data, model="")
        except ValueError as exc:
            raise BackendError(str(exc), status=400, code="invalid_request_error") from exc
        parts: list[str] = []
        self.generate(self.plan(request), emit=lambda delta: parts.append(delta.content),
                      should_stop=lambda: False)
        return "".join(parts)

    def check_execute(self, query: dict) -> tuple[bool, Any]:
        try:
            path = self.path()
            model = self.model()
        except BackendError as exc:
            return False, {"status": "unavailable", "error": exc.message}
        details: dict[str, Any] = {"status": "ready", "model_file": path.name, "n_ctx": self.n_ctx,
                                   "busy": model.lock.locked()}
        messages = (query or {}).get("messages")
        if messages:
            try:
                prompt_tokens = self.count_tokens(messages)
            except BackendError as exc:
                return False, {**details, "error": exc.message}
            details["prompt_tokens"] = prompt_tokens
            if prompt_tokens >= self.n_ctx:
                return False, {**details, "error": "prompt longer than the context"}
        return True, details

    def get_current_estimates(self) -> tuple[bool, Any]:
        model = _models.get(model_key(self.path()))
        estimates: dict[str, Any] = {"loaded": model is not None, "n_threads": self.n_threads,
                                     "n_ctx": self.n_ctx, "tokens_per_s": None}
        if model is not None:
            recent = list(model.recent)
            tokens = sum(n for n, _ in recent)
            seconds = sum(s for _, s in recent)
            if seconds > 0:
                estimates["tokens_per_s"] = round(tokens / seconds, 1)
            estimates["recent_generations"] = len(recent)
            estimates["busy"] = model.lock.locked()
        return True, estimates
