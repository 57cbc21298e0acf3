"""The seed's example custom backend, usable as a `python` block: {"class": "inference.backends.examples.ReverseTextLLM"}."""

from __future__ import annotations

from typing import Any

from inference.backends.base import LLMInferenceAPI


class ReverseTextLLM(LLMInferenceAPI):
    def run_inference(self, input_data: dict) -> str:
        text = input_data.get("text", "")
        return text[::-1]

    def check_execute(self, query: dict) -> tuple[bool, Any]:
        return True, {"status": "Ready"}

    def get_current_estimates(self) -> tuple[bool, Any]:
        return True, {"estimated_latency": "1ms"}
