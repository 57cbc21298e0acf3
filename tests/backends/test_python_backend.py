"""The `python` backend: a user's LLMInferenceAPI class, the seed's ReverseTextLLM first."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from inference.backends.base import BackendError, ChatDelta, ChatRequest, StreamingBackend, UnsupportedFeature
from inference.backends.examples import ReverseTextLLM
from inference.backends.factory import BACKEND_CLASSES, backend_for
from inference.backends.python_class import PythonClassBackend

REVERSE = {"class": "inference.backends.examples.ReverseTextLLM"}


@pytest.fixture(autouse=True)
def _this_module_is_an_allowed_python_backend_module(settings):
    # The classes below stand in for an operator's own module, which the operator would allow.
    settings.PYTHON_BACKEND_MODULES = ["inference.backends.examples", __name__]


class NotABackend:
    def run_inference(self, input_data):
        return "looks right but is not an LLMInferenceAPI"


class ExplodingLLM(ReverseTextLLM):
    def run_inference(self, input_data: dict) -> str:
        raise RuntimeError("the GPU caught fire")


class ReturnsBytesLLM(ReverseTextLLM):
    def run_inference(self, input_data: dict):
        return b"bytes"


class CountingStream(StreamingBackend):
    """A user backend that streams itself: its deltas pass through untouched."""

    def __init__(self, upto: int = 3):
        self.upto = upto

    async def stream_chat(self, request: ChatRequest) -> AsyncIterator[ChatDelta]:
        for i in range(self.upto):
            yield ChatDelta(content=str(i))
        yield ChatDelta(finish_reason="stop", usage={"prompt_tokens": 1, "completion_tokens": self.upto,
                                                     "total_tokens": 1 + self.upto})

    def run_inference(self, input_data: dict) -> str:
        return "012"

    def check_execute(self, query):
        return True, {}

    def get_current_estimates(self):
        return True, {}


def test_every_backend_type_is_registered():
    assert set(BACKEND_CLASSES) >= {"openai", "llamacpp", "python", "aios_grpc", "orgllm_grpc"}


def test_the_seeds_reverse_text_llm_runs_synchronously():
    backend = PythonClassBackend.from_config(REVERSE)
    assert backend.run_inference({"text": "hello world"}) == "dlrow olleh"
    assert backend.check_execute({}) == (True, {"status": "Ready"})
    assert backend.get_current_estimates() == (True, {"estimated_latency": "1ms"})


async def test_reverse_text_llm_answers_a_chat_with_the_last_user_text_reversed():
    backend = PythonClassBackend.from_config(REVERSE)
    request = ChatRequest(model="reverse", messages=[
        {"role": "system", "content": "ignored"},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "tsrif"},
        {"role": "user", "content": [{"type": "text", "text": "hello "}, {"type": "text", "text": "world"}]},
    ])
    result = await backend.complete(request)
    assert result["choices"][0]["message"]["content"] == "dlrow olleh"
    assert result["choices"][0]["finish_reason"] == "stop"
    assert result["usage"]["completion_tokens"] == 2
    assert result["usage"]["total_tokens"] == result["usage"]["prompt_tokens"] + 2


async def test_a_streaming_user_class_is_streamed_as_is():
    backend = PythonClassBackend.from_config({"class": "tests.backends.test_python_backend.CountingStream",
                                              "kwargs": {"upto": 4}})
    deltas = [d async for d in backend.stream_chat(ChatRequest(model="c", messages=[{"role": "user",
                                                                                      "content": "go"}]))]
    assert [d.content for d in deltas] == ["0", "1", "2", "3", ""]
    assert deltas[-1].usage["completion_tokens"] == 4


@pytest.mark.parametrize("config, fragment", [
    ({}, 'needs "class"'),
    ({"class": "inference.backends.examples.nope.Missing"}, "cannot be imported"),
    ({"class": "inference.backends.nope.Missing"}, "not in a module the operator allows"),
    ({"class": "tests.backends.test_python_backend.NotABackend"}, "not a subclass of LLMInferenceAPI"),
    ({"class": "tests.backends.test_python_backend.ChatRequest"}, "not a subclass of LLMInferenceAPI"),
    ({"class": "tests.backends.test_python_backend.StreamingBackend"}, "not in PYTHON_BACKEND_MODULES"),
    ({"class": "os.path.join"}, "not in a module the operator allows"),
    ({"class": "inference.backends.examples.ReverseTextLLM", "kwargs": {"nope": 1}}, "could not be constructed"),
])
def test_bad_python_configs_are_refused_with_a_clear_error(config, fragment):
    with pytest.raises(BackendError) as caught:
        backend_for(block_id=f"bad-python-{fragment}", backend_type="python", config=config)
    assert fragment in caught.value.message
    assert caught.value.status == 500


async def test_a_failing_user_class_becomes_a_backend_error_naming_it():
    backend = PythonClassBackend.from_config({"class": "tests.backends.test_python_backend.ExplodingLLM"})
    with pytest.raises(BackendError) as caught:
        await backend.complete(ChatRequest(model="x", messages=[{"role": "user", "content": "hi"}]))
    assert "ExplodingLLM.run_inference failed: the GPU caught fire" in caught.value.message


async def test_a_non_string_answer_is_an_error():
    backend = PythonClassBackend.from_config({"class": "tests.backends.test_python_backend.ReturnsBytesLLM"})
    with pytest.raises(BackendError, match="returned bytes, not str"):
        await backend.complete(ChatRequest(model="x", messages=[{"role": "user", "content": "hi"}]))


async def test_image_parts_and_n_above_one_are_refused():
    backend = PythonClassBackend.from_config(REVERSE)
    image = [{"type": "image_url", "image_url": {"url": "data:,"}}]
    with pytest.raises(UnsupportedFeature, match="image_url"):
        await backend.complete(ChatRequest(model="x", messages=[{"role": "user", "content": image}]))
    with pytest.raises(UnsupportedFeature, match="n must be 1"):
        await backend.complete(ChatRequest(model="x", n=2, messages=[{"role": "user", "content": "a"}]))


def test_unknown_backend_type_is_a_clear_error():
    with pytest.raises(BackendError, match="'carrier-pigeon' is not available"):
        backend_for(block_id="pigeon", backend_type="carrier-pigeon", config={})
