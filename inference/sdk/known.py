"""The seed's KnownLLMs and KnownLLMOptimizers: a named set of blocks to run, fed from the registry
or defined in code.

    llms = KnownLLMs(base_url="http://127.0.0.1:8000", api_key="sb-...")
    llms.add_llm(name="small", block_id="smollm2-135m-instruct")
    llms.run_ai_inference(name="small", input_data={"text": "hi"})

The managers keep their own name -> Block table (add_llm, add_custom_llm,
create_custom_llm_block, list_llms, remove_llm), as the seed does; registering a name is
local to the manager. To store a block in the server's registry use
BlocksQueryManager.create_block. A block with an attached inference object runs that object
here; any other runs on the server at adhoc_inference_url or base_url, or with neither in this
process (modes.py).
"""

from __future__ import annotations

import copy
from typing import Any

from inference.sdk.blocks import Block
from inference.sdk.http import default_key
from inference.sdk.modes import estimate_registry_block, registry_for, run_registry_block


class KnownLLMs:
    """A named set of LLM blocks to run, fed from the registry or defined in code."""

    kind = "llm"

    def __init__(
        self,
        base_url: str | None = None,
        adhoc_inference_url: str | None = None,
        api_key: str | None = None,
        organization: Any = None,
    ):
        self.base_url = base_url
        self.adhoc_inference_url = adhoc_inference_url
        self.api_key = default_key(api_key)
        self.registry = registry_for(base_url=base_url, api_key=self.api_key, organization=organization)
        self._blocks: dict[str, Block] = {}

    @property
    def inference_url(self) -> str | None:
        """Where registry blocks run: None is in this process."""
        return self.adhoc_inference_url or self.base_url

    def add_llm(self, name: str, block_id: str) -> Block:
        """Fetch a block from the registry and register it under `name`. `block_id` is your own
        block's id (or the platform's), or another organization's qualified id "acme/summarizer"."""
        block = Block(self.registry.get(block_id))
        if block.kind != self.kind:
            raise ValueError(f"block '{block_id}' is a {block.kind} block, not {self.kind}")
        self._blocks[name] = block
        return block

    def add_custom_llm(self, name: str, block_data: dict[str, Any]) -> Block:
        block = Block(block_data)
        self._blocks[name] = block
        return block

    def create_custom_llm_block(
        self,
        id: str,  # noqa: A002 - the seed's parameter name
        description: str,
        tags: list[str],
        input_protocols: list[str],
        output_protocols: list[str],
        block_inference_object: Any,
    ) -> Block:
        """Register a block whose inference runs `block_inference_object.run_inference`."""
        if not callable(getattr(block_inference_object, "run_inference", None)):
            raise TypeError("block_inference_object must implement LLMInferenceAPI (run_inference, ...)")
        data = {
            "id": id,
            "kind": self.kind,
            "blockMetadata": {"description": description, "tags": list(tags)},
            "inputProtocols": list(input_protocols),
            "outputProtocols": list(output_protocols),
        }
        block = Block(data, inference=block_inference_object)
        self._blocks[id] = block
        return block

    def list_llms(self) -> dict[str, Block]:
        return dict(self._blocks)

    def remove_llm(self, name: str) -> None:
        if name not in self._blocks:
            raise KeyError(f"no {self.kind} registered under the name '{name}'")
        del self._blocks[name]

    def get(self, name: str) -> Block:
        try:
            return self._blocks[name]
        except KeyError:
            raise KeyError(f"no {self.kind} registered under the name '{name}'") from None

    def query_blocks(self, query: dict[str, Any]) -> list[Block]:
        """Registry blocks of this manager's kind matching `query` (a simple dict such as
        {"tags": ["qa"], "inputProtocols": ["text/plain"]}, or a conditions payload)."""
        if not isinstance(query, dict):
            raise TypeError("query must be a dict")
        if "body" in query:
            payload = copy.deepcopy(query)
            payload["body"]["values"].setdefault("kind", self.kind)
        elif "conditions" in query:
            payload = {**query, "kind": query.get("kind", self.kind)}
        else:
            payload = {"kind": self.kind, **query}
        return [Block(item) for item in self.registry.query(payload)]

    def get_searchable_representation(self) -> list[dict[str, Any]]:
        return [block.searchable() for block in self._blocks.values()]

    def run_ai_inference(
        self, name: str, input_data: dict[str, Any], session_id: str | None = None, frame_ptr: bytes = b""
    ) -> Any:
        block = self.get(name)
        if block.inference is not None:
            return block.inference.run_inference(input_data)
        return run_registry_block(inference_url=self.inference_url, api_key=self.api_key, block_id=block.reference,
                                  input_data=input_data, session_id=session_id or "", frame_ptr=frame_ptr)

    def estimate(self, name: str, session_id: str | None = None, query: dict[str, Any] | None = None) -> Any:
        """Feasibility and resource estimates before running. For an attached inference
        object: {"check_execute": [ok, data], "estimates": [ok, data]}; for a registry block
        remotely, the server's /discovery/estimate answer (`query` is a prompt, input_data or
        {"input_size": <prompt tokens>}); in-process, the backend's check_execute and estimates."""
        block = self.get(name)
        if block.inference is not None:
            return {
                "check_execute": list(block.inference.check_execute(query or {})),
                "estimates": list(block.inference.get_current_estimates()),
            }
        return estimate_registry_block(inference_url=self.inference_url, api_key=self.api_key,
                                       block_id=block.reference, session_id=session_id or "", query=query or {})


class KnownLLMOptimizers(KnownLLMs):
    """KnownLLMs for optimizer blocks."""

    kind = "optimizer"

    def add_optimizer(self, name: str, block_id: str) -> Block:
        return self.add_llm(name, block_id)

    def list_optimizers(self) -> dict[str, Block]:
        return self.list_llms()

    def remove_optimizer(self, name: str) -> None:
        self.remove_llm(name)
