"""The built-in model on llama.cpp, end to end on the real bundled GGUF (short generations)."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from inference.backends.base import BackendError, ChatRequest, UnsupportedFeature
from inference.backends.factory import backend_for
from inference.backends.llamacpp import LlamaCppBackend, _StopScanner, render_prompt

pytestmark = pytest.mark.slow

CAPITAL = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def backend() -> LlamaCppBackend:
    return LlamaCppBackend()


def chat(messages, **kwargs) -> ChatRequest:
    return ChatRequest(messages=messages, model="smollm2-135m-instruct", **kwargs)


async def test_it_answers_the_capital_of_france_with_a_sentence(backend):
    result = await backend.complete(chat(CAPITAL, max_tokens=24, temperature=0.2, seed=1))
    answer = result["choices"][0]["message"]["content"].strip()
    assert len(answer.split()) >= 2, answer
    assert any(c.isalpha() for c in answer)
    assert result["choices"][0]["finish_reason"] in ("stop", "length")


async def test_streaming_yields_many_deltas_and_exact_usage_last(backend):
    deltas = [d async for d in backend.stream_chat(chat(CAPITAL, max_tokens=16, temperature=0.7, seed=3))]
    text = "".join(d.content for d in deltas)
    assert len([d for d in deltas if d.content]) >= 3
    assert all(d.usage is None for d in deltas[:-1])
    usage = deltas[-1].usage
    assert usage["prompt_tokens"] == backend.count_tokens(CAPITAL)
    assert 1 <= usage["completion_tokens"] <= 16
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    # Re-tokenizing the text lands within a token or two of what the model generated.
    retokenized = len(backend.model().llama.tokenize(text.encode(), add_bos=False, special=False))
    assert abs(retokenized - usage["completion_tokens"]) <= 2


async def test_closing_the_stream_stops_generation_within_a_token(backend):
    model = backend.model()
    stream = backend.stream_chat(chat([{"role": "user", "content": "Tell me a long story about a dragon."}],
                                      max_tokens=300, temperature=0.8, seed=5))
    received = 0
    async for delta in stream:
        received += bool(delta.content)
        if received == 3:
            break
    await stream.aclose()
    at_close = model.tokens_total
    thread = backend.last_thread
    await asyncio.to_thread(thread.join, 5)
    assert not thread.is_alive(), "the generation thread kept running after aclose"
    assert model.tokens_total - at_close <= 1, "tokens were generated after the stream was closed"
    generated, _ = model.recent[-1]
    assert generated < 30, generated
    assert not model.lock.locked()


async def test_a_request_waiting_for_the_model_gives_up_when_closed(backend):
    model = backend.model()
    model.lock.acquire()  # another generation holds the model
    try:
        before = model.generations
        backend.last_thread = None
        stream = backend.stream_chat(chat(CAPITAL, max_tokens=8))
        waiting = asyncio.create_task(stream.__anext__())
        for _ in range(100):
            if backend.last_thread is not None:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.1)
        assert backend.last_thread.is_alive() and not waiting.done()
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        await stream.aclose()
        thread = backend.last_thread
        await asyncio.to_thread(thread.join, 2)
        assert not thread.is_alive()
        assert model.generations == before, "a cancelled request still ran"
    finally:
        model.lock.release()


async def test_the_event_loop_keeps_ticking_during_generation(backend):
    gaps: list[float] = []
    done = asyncio.Event()

    async def ticker():
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    tick = asyncio.create_task(ticker())
    started = time.perf_counter()
    await backend.complete(chat(CAPITAL, max_tokens=32, temperature=0.7, seed=2))
    elapsed = time.perf_counter() - started
    done.set()
    await tick
    # The loop ran all along: ticks cover the generation and no tick waited on the model.
    assert len(gaps) >= elapsed / 0.05, (len(gaps), elapsed)
    assert max(gaps) < 0.25, max(gaps)


async def test_two_concurrent_streams_are_served_one_after_the_other(backend):
    results = await asyncio.gather(*(backend.complete(chat(CAPITAL, max_tokens=6, temperature=0.5, seed=i))
                                     for i in range(2)))
    for result in results:
        assert result["usage"]["completion_tokens"] >= 1
        assert result["choices"][0]["message"]["content"]


async def test_a_trailing_assistant_message_is_continued_and_stop_cuts_it(backend):
    messages = CAPITAL + [{"role": "assistant", "content": "The capital of France is"}]
    prompt = render_prompt(backend.model(), messages)
    assert prompt.endswith("<|im_start|>assistant\nThe capital of France is")
    result = await backend.complete(chat(messages, max_tokens=12, temperature=0, stop=["."]))
    content = result["choices"][0]["message"]["content"]
    assert content.strip() and "." not in content
    assert result["choices"][0]["finish_reason"] == "stop"
    assert result["usage"]["prompt_tokens"] == backend.count_tokens(messages)


def test_content_part_lists_render_like_plain_strings(backend):
    parts = [{"role": "user", "content": [{"type": "text", "text": "What is the capital "},
                                          {"type": "text", "text": "of France?"}]}]
    assert render_prompt(backend.model(), parts) == render_prompt(backend.model(), CAPITAL)


async def test_a_seed_reproduces_a_sampled_answer(backend):
    request = chat(CAPITAL, max_tokens=10, temperature=1.0, seed=1234)
    first = (await backend.complete(request))["choices"][0]["message"]["content"]
    second = (await backend.complete(request))["choices"][0]["message"]["content"]
    assert first == second


async def test_json_response_format_is_enforced_by_a_grammar(backend):
    result = await backend.complete(chat([{"role": "user", "content": "Describe a cat."}], max_tokens=8,
                                         temperature=0, response_format={"type": "json_object"}))
    assert result["choices"][0]["message"]["content"].lstrip().startswith("{")


@pytest.mark.parametrize("kwargs, fragment", [
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]}, "does not support tools"),
    ({"n": 2}, "n must be 1"),
    ({"response_format": {"type": "xml"}}, "'xml' is not supported"),
])
async def test_unsupported_features_are_a_clear_400(backend, kwargs, fragment):
    with pytest.raises(UnsupportedFeature) as caught:
        await backend.complete(chat(CAPITAL, **kwargs))
    assert caught.value.status == 400
    assert fragment in caught.value.message


async def test_a_prompt_longer_than_the_context_is_a_400(backend):
    with pytest.raises(BackendError) as caught:
        await backend.complete(chat([{"role": "user", "content": "word " * 4000}], max_tokens=4))
    assert (caught.value.status, caught.value.code) == (400, "context_length_exceeded")


def test_the_seeds_sync_interface(backend):
    assert backend.run_inference({"text": "Say hello.", "max_tokens": 6, "temperature": 0}).strip()
    ok, details = backend.check_execute({"messages": CAPITAL})
    assert ok and details["status"] == "ready"
    assert details["prompt_tokens"] == backend.count_tokens(CAPITAL)
    ok, estimates = backend.get_current_estimates()
    assert ok and estimates["loaded"] and estimates["tokens_per_s"] > 0


def test_a_missing_model_file_is_reported_not_crashed(tmp_path):
    broken = LlamaCppBackend(model_path=str(tmp_path / "absent.gguf"))
    ok, details = broken.check_execute({})
    assert not ok and "does not exist" in details["error"]
    with pytest.raises(BackendError) as caught:
        broken.run_inference({"text": "x"})
    assert caught.value.status == 503


def test_unknown_config_keys_are_refused():
    with pytest.raises(BackendError, match=r"unknown keys: \['threads'\]"):
        backend_for(block_id="llama-bad", backend_type="llamacpp", config={"threads": 4})


def test_a_block_timeout_is_accepted_like_every_backend_accepts_it():
    assert isinstance(backend_for(block_id="llama-timeout", backend_type="llamacpp", config={"timeout_s": 30}),
                      LlamaCppBackend)


def test_the_stop_scanner_holds_back_partial_stops_and_cuts_at_full_ones():
    scanner = _StopScanner(["END", "\n\n"])
    assert scanner.feed("Hello E") == ("Hello ", False)
    assert scanner.feed("N") == ("", False)
    assert scanner.feed("X more") == ("ENX more", False)
    assert scanner.feed(" fin\n") == (" fin", False)
    assert scanner.feed("\nafter") == ("", True)
    assert json.dumps(_StopScanner([]).feed("all")) == '["all", false]'


def test_the_model_is_loaded_once_per_process_even_when_first_asked_concurrently(backend):
    from concurrent.futures import ThreadPoolExecutor

    from inference.backends import llamacpp

    assert LlamaCppBackend().model() is backend.model()
    path = backend.path()
    with ThreadPoolExecutor(4) as pool:
        loaded = list(pool.map(lambda _: llamacpp.load_model(path, n_threads=1, n_ctx=256), range(4)))
    # One instance per model file: a smaller context or another thread count is served by the same one.
    assert all(m is backend.model() for m in loaded)


async def test_an_answer_with_no_max_tokens_stops_at_llamacpp_max_tokens(backend, settings):
    settings.LLAMACPP_MAX_TOKENS = 6
    story = [{"role": "user", "content": "Write a long story about a lighthouse keeper."}]
    result = await backend.complete(chat(story, temperature=0.7, seed=2))
    assert result["usage"]["completion_tokens"] == 6
    assert result["choices"][0]["finish_reason"] == "length"
