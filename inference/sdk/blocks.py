"""Blocks as the seed's SDK sees them, and the seed's BlocksQueryManager: discovery in the registry
by conditions (filter) or by a task description (similarity), and writing blocks to it.

    query = BlocksQueryManager(base_url="http://127.0.0.1:8000", api_key="sb-...")
    for block in query.filter_data([{"variable": "tags", "operator": "IN", "value": ["qa"]}]):
        print(block.id, block.blockMetadata.description)

With no base_url the registry is this process's database (modes.py, in_process.py).
"""

from __future__ import annotations

import copy
from typing import Any

from inference.sdk.http import default_key
from inference.sdk.modes import registry_for


class _Attrs:
    """Read-only attribute view of a dict: block.blockMetadata.description."""

    def __init__(self, data: dict[str, Any]):
        object.__setattr__(self, "_data", data)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            value = self._data[name]
        except KeyError:
            raise AttributeError(name) from None
        return _Attrs(value) if isinstance(value, dict) else value

    def __getitem__(self, name: str) -> Any:
        return self._data[name]

    def get(self, name: str, default: Any = None) -> Any:
        return self._data.get(name, default)

    def to_dict(self) -> dict[str, Any]:
        return copy.deepcopy(self._data)

    def __repr__(self) -> str:
        return repr(self._data)


def normalize_block_data(data: dict[str, Any]) -> dict[str, Any]:
    """The camelCase block, with singular protocol spellings folded into the plural."""
    if not isinstance(data, dict):
        raise TypeError("block data must be a dict in the seed's camelCase shape")
    if not isinstance(data.get("id"), str) or not data["id"]:
        raise ValueError("block data needs a non-empty string 'id'")
    out = copy.deepcopy(data)
    meta = dict(out.get("blockMetadata") or {})
    meta.setdefault("description", "")
    meta["tags"] = list(meta.get("tags") or [])
    out["blockMetadata"] = meta
    for plural in ("inputProtocols", "outputProtocols"):
        singular = out.pop(plural[:-1], None)
        value = out.get(plural, singular)
        out[plural] = [value] if isinstance(value, str) else list(value or [])
    out.setdefault("kind", "llm")
    return out


class Block(_Attrs):
    """A block as the seed's SDK sees it; `inference` is an attached LLMInferenceAPI, if any."""

    def __init__(self, data: dict[str, Any], inference: Any = None):
        super().__init__(normalize_block_data(data))
        object.__setattr__(self, "inference", inference)

    @property
    def reference(self) -> str:
        """The name the server resolves to exactly this block: its qualified id
        "<org-slug>/<block-id>" when the registry gave one (a plain id names the caller's own block
        first, so it would miss another organization's), else its id."""
        return self._data.get("qualifiedId") or self._data["id"]

    def searchable(self) -> dict[str, Any]:
        meta = self._data["blockMetadata"]
        return {
            "id": self._data["id"],
            "description": meta.get("description", ""),
            "tags": list(meta.get("tags", [])),
            "inputProtocols": list(self._data["inputProtocols"]),
            "outputProtocols": list(self._data["outputProtocols"]),
        }

    def __repr__(self) -> str:
        return f"Block({self._data['id']!r})"


def filter_payload(conditions: Any, logical_operator: str = "AND") -> dict[str, Any]:
    """The seed's filter payload around a list of conditions (or one group)."""
    if isinstance(conditions, dict) and "conditions" in conditions:
        cluster = conditions
    else:
        cluster = {"logicalOperator": logical_operator, "conditions": list(conditions)}
    return {"body": {"values": {"matchType": "cluster", "filter": {"clusterQuery": cluster}}}}


class BlocksQueryManager:
    """Discovery against the registry: filter by conditions, or rank by similarity."""

    def __init__(self, base_url: str | None = None, api_key: str | None = None, organization: Any = None):
        self.base_url = base_url
        self.registry = registry_for(base_url=base_url, api_key=default_key(api_key), organization=organization)

    def filter_data(self, conditions: Any) -> list[Block]:
        """Blocks matching every condition (a list is an AND; a group may nest OR)."""
        return [Block(item) for item in self.registry.query(filter_payload(conditions))]

    def similarity_search(
        self,
        conditions: Any,
        policy_code_path: str | None = None,
        max_results: int = 10,
        top_k: int | None = None,
    ) -> list[Block]:
        """Blocks ranked against the task description given as a `task_description` LIKE
        condition; the other conditions narrow the candidates. `policy_code_path` names a registered
        policy (None: the server's default, cosine; the server never runs policy code it is sent).
        Each Block carries `score` and `parts`."""
        cluster = filter_payload(conditions)["body"]["values"]["filter"]
        parameters: dict[str, Any] = {"filterRule": cluster}
        if top_k is not None:
            parameters["return"] = top_k
        payload = {
            "body": {
                "values": {
                    "matchType": "cluster",
                    "rankingPolicyRule": {
                        "values": {
                            "executionMode": "code",
                            "policyCodePath": policy_code_path,
                            "settings": {"maxResults": max_results, "enableCaching": False},
                            "parameters": parameters,
                        }
                    },
                }
            }
        }
        return [Block(item) for item in self.registry.similarity(payload)]

    def get_block(self, block_id: str) -> Block:
        return Block(self.registry.get(block_id))

    def create_block(self, block_data: dict[str, Any]) -> Block:
        """Store a block in the registry, owned by the caller's organization."""
        return Block(self.registry.create(block_data))

    def delete_block(self, block_id: str) -> None:
        self.registry.delete(block_id)
