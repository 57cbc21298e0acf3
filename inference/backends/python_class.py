"""A block backed by an operator's own class: config {"class": "dotted.path.To.Class"}.

The class must come from a module under settings.PYTHON_BACKEND_MODULES; the path is checked
before anything is imported, here too and not only at registration, because a stored block may
predate the rule (registry/server_code.py).

The class implements the seed's LLMInferenceAPI. If it is a StreamingBackend its
stream_chat is used as is; otherwise run_inference runs in a worker thread (it is
synchronous user code) and its answer becomes one delta.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from django.utils.module_loading import import_string

from inference.backends.base import (
    BackendError,
    ChatDelta,
    ChatRequest,
    LLMInferenceAPI,
    StreamingBackend,
    UnsupportedFeature,
)
from inference.backends.content import approximate_usage, input_data_for
from registry.server_code import python_class_refusal, python_module_allowed


def _config_error(message: str) -> BackendError:
    return BackendError(message, status=500, code="backend_misconfigured")


class PythonClassBackend(StreamingBackend):
    def __init__(self, impl: LLMInferenceAPI):
        # A plain LLMInferenceAPI's usage is approximate_usage (words): the gateway labels it estimated.
        self.reports_usage = isinstance(impl, StreamingBackend) and impl.reports_usage
        self.impl = impl

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> PythonClassBackend:
        path = config.get("class")
        if not isinstance(path, str) or not path:
            raise _config_error('python backend config needs "class": a dotted path to an LLMInferenceAPI class')
        refusal = python_class_refusal(path)
        if refusal is not None:
            raise _config_error(f"python backend refused: {refusal}")
        try:
            target = import_string(path)
        except ImportError as exc:
            raise _config_error(f"python backend class {path!r} cannot be imported: {exc}") from exc
        if not (isinstance(target, type) and issubclass(target, LLMInferenceAPI)):
            raise _config_error(f"{path!r} is not a subclass of LLMInferenceAPI")
        # A name an allowed module merely imported (`from elsewhere import Thing`) is not its class.
        if not python_module_allowed(target.__module__):
            raise _config_error(f"python backend refused: {path!r} is defined in {target.__module__!r}, "
                                "which is not in PYTHON_BACKEND_MODULES")
        kwargs = config.get("kwargs") or {}
        if not isinstance(kwargs, dict):
            raise _config_error('python backend "kwargs" must be an object')
        try:
            impl = target(**kwargs)
        except Exception as exc:
            raise _config_error(f"{path!r} could not be constructed: {exc}") from exc
        return cls(impl)

    async def stream_chat(self, request: ChatRequest) -> AsyncIterator[ChatDelta]:
        if isinstance(self.impl, StreamingBackend):
            stream = self.impl.stream_chat(request)
            try:
                async for delta in stream:
                    yield delta
            finally:
                await stream.aclose()
            return
        if request.n != 1:
            raise UnsupportedFeature("this python backend returns one choice; n must be 1")
        try:
            text = await asyncio.to_thread(self.impl.run_inference, input_data_for(request))
        except BackendError:
            raise
        except Exception as exc:
            raise BackendError(f"{type(self.impl).__name__}.run_inference failed: {exc}", status=500,
                               code="backend_error") from exc
        if not isinstance(text, str):
            raise BackendError(f"{type(self.impl).__name__}.run_inference returned "
                               f"{type(text).__name__}, not str", status=500, code="backend_error")
        yield ChatDelta(content=text, finish_reason="stop", usage=approximate_usage(request.messages, text))

    def run_inference(self, input_data: dict) -> str:
        return self.impl.run_inference(input_data)

    def check_execute(self, query: dict) -> tuple[bool, Any]:
        return self.impl.check_execute(query)

    def get_current_estimates(self) -> tuple[bool, Any]:
        return self.impl.get_current_estimates()
