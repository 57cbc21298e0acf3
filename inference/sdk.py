"""The seed's Python API: KnownLLMs, KnownLLMOptimizers, BlocksQueryManager and Block.

    from inference.sdk import KnownLLMs, KnownLLMOptimizers, BlocksQueryManager

Two modes, same methods:
- remote (`base_url="http://host:8000"`): HTTP to the REST API with `Authorization:
  Bearer <api_key>`; needs only the standard library, not Django. Registry blocks run on
  that server too (`/v1/chat/completions`, `/discovery/estimate`), or on
  `adhoc_inference_url` when given.
- in-process (no base_url): the Django ORM through the same selectors and services the
  API uses, acting for `organization` (an Organization or its slug; default the
  built-in "local" organization). Creating one calls django.setup() if Django is not set
  up yet (DJANGO_SETTINGS_MODULE, default webapp.settings).
  The Django-using modules (registry's selectors and services, inference.dispatch) are
  imported inside the in-process methods, so a remote caller's plain script never loads
  Django; the layers allow them at module level (tests/test_layers.py lists this file).

The managers keep their own name -> Block table (add_llm, add_custom_llm,
create_custom_llm_block, list_llms, remove_llm), as the seed does; registering a name is
local to the manager. To store a block in the server's registry use
BlocksQueryManager.create_block.
"""

from __future__ import annotations

import copy
import os
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from registry.http_envelope import RegistryError, envelope_call

DEFAULT_TIMEOUT_S = 30.0
PAGE_SIZE = 1000


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


# Transports: one talks HTTP, one calls the selectors and services in this process.


class _RemoteRegistry:
    def __init__(self, base_url: str, api_key: str | None, timeout: float = DEFAULT_TIMEOUT_S):
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout

    def _call(self, method: str, path: str, body: Any = None, params: dict | None = None) -> dict:
        return envelope_call(self.base_url, method, path, api_key=self.api_key, body=body, params=params,
                             timeout=self.timeout)

    def _pages(self, path: str, body: Any) -> list[dict]:
        items: list[dict] = []
        while True:
            page = self._call("POST", path, body, {"limit": PAGE_SIZE, "offset": len(items)})
            items += page["data"]
            if not page["data"] or not page.get("hasMore"):
                return items

    def get(self, block_id: str) -> dict:
        # A qualified id "<org-slug>/<block-id>" keeps its one "/" in the path.
        return self._call("GET", f"/api/blocks/{urllib.parse.quote(block_id, safe='/')}")["data"]

    def create(self, block_data: dict) -> dict:
        return self._call("POST", "/api/blocks", block_data)["data"]

    def delete(self, block_id: str) -> None:
        self._call("DELETE", f"/api/blocks/{urllib.parse.quote(block_id, safe='/')}")

    def query(self, payload: Any) -> list[dict]:
        return self._pages("/api/blocks/query", payload)

    def similarity(self, payload: Any) -> list[dict]:
        return self._call("POST", "/api/blocks/similarity", payload)["data"]


def _setup_django() -> None:
    """A plain script may only have set DJANGO_SETTINGS_MODULE (or nothing): the ORM needs the apps loaded."""
    from django.apps import apps

    if not apps.ready:
        import django

        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")
        django.setup()


class _LocalRegistry:
    def __init__(self, organization: Any = None):
        _setup_django()
        self._organization = organization

    @property
    def organization(self):
        from registry.auth import local_organization
        from registry.models import Organization

        if self._organization is None:
            self._organization = local_organization()
        elif isinstance(self._organization, str):
            slug = self._organization
            self._organization = Organization.objects.filter(slug=slug).first()
            if self._organization is None:
                raise RegistryError(f"no organization with slug '{slug}'")
        return self._organization

    def get(self, block_id: str) -> dict:
        from registry.selectors import block_get_visible

        block = block_get_visible(organization=self.organization, block_id=block_id)
        if block is None:
            raise RegistryError("block not found", 404)
        return block.to_dict()

    def create(self, block_data: dict) -> dict:
        from rest_framework.exceptions import ValidationError

        from registry.envelope import _flatten
        from registry.serializers import BlockWriteSerializer
        from registry.services import BlockConflict, block_create

        serializer = BlockWriteSerializer(data=block_data)
        try:
            serializer.is_valid(raise_exception=True)
        except ValidationError as exc:
            raise RegistryError("; ".join(_flatten(exc.detail)), 400) from None
        try:
            return block_create(organization=self.organization, data=serializer.validated_data).to_dict()
        except BlockConflict as exc:
            raise RegistryError(str(exc), 409) from None

    def delete(self, block_id: str) -> None:
        from registry.selectors import block_get_owned, block_get_visible
        from registry.services import block_delete

        block = block_get_owned(organization=self.organization, block_id=block_id)
        if block is None:
            visible = block_get_visible(organization=self.organization, block_id=block_id)
            if visible is None:
                raise RegistryError("block not found", 404)
            raise RegistryError("only the owning organization can change this block", 403)
        block_delete(block=block)

    def query(self, payload: Any) -> list[dict]:
        from registry.query import QueryError
        from registry.selectors import blocks_query

        try:
            return [b.to_dict() for b in blocks_query(organization=self.organization, payload=payload)]
        except QueryError as exc:
            raise RegistryError(str(exc), 400) from None

    def similarity(self, payload: Any) -> list[dict]:
        from registry.query import QueryError
        from registry.similarity import blocks_similar_to_payload, hit_to_dict

        try:
            _, hits = blocks_similar_to_payload(organization=self.organization, payload=payload)
        except QueryError as exc:
            raise RegistryError(str(exc), 400) from None
        return [hit_to_dict(hit) for hit in hits]


def _registry(base_url: str | None, api_key: str | None, organization: Any):
    return _RemoteRegistry(base_url, api_key) if base_url else _LocalRegistry(organization)


def _dispatch(function: str, *, base_url: str | None, **kwargs: Any) -> Any:
    """inference.dispatch's `function`, its failures raised as RegistryError like every SDK failure."""
    from inference import dispatch
    from inference.backends.base import BackendError

    try:
        return getattr(dispatch, function)(base_url=base_url, **kwargs)
    except BackendError as exc:
        # Remotely the status is the one the server answered (none when it was not reached).
        raise RegistryError(exc.message, exc.upstream_status if base_url else exc.status) from None


def filter_payload(conditions: Any, logical_operator: str = "AND") -> dict[str, Any]:
    """The seed's filter payload around a list of conditions (or one group)."""
    if isinstance(conditions, dict) and "conditions" in conditions:
        cluster = conditions
    else:
        cluster = {"logicalOperator": logical_operator, "conditions": list(conditions)}
    return {"body": {"values": {"matchType": "cluster", "filter": {"clusterQuery": cluster}}}}


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
        self.api_key = api_key
        self.registry = _registry(base_url, api_key, organization)
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
        return _dispatch(
            "run_ai_inference",
            block_id=block.reference,
            input_data=input_data,
            session_id=session_id or "",
            frame_ptr=frame_ptr,
            base_url=self.inference_url,
            api_key=self.api_key,
        )

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
        return _dispatch(
            "estimate",
            block_id=block.reference,
            session_id=session_id or "",
            query=query or {},
            base_url=self.inference_url,
            api_key=self.api_key,
        )


class KnownLLMOptimizers(KnownLLMs):
    """KnownLLMs for optimizer blocks."""

    kind = "optimizer"

    def add_optimizer(self, name: str, block_id: str) -> Block:
        return self.add_llm(name, block_id)

    def list_optimizers(self) -> dict[str, Block]:
        return self.list_llms()

    def remove_optimizer(self, name: str) -> None:
        self.remove_llm(name)


class BlocksQueryManager:
    """Discovery against the registry: filter by conditions, or rank by similarity."""

    def __init__(self, base_url: str | None = None, api_key: str | None = None, organization: Any = None):
        self.base_url = base_url
        self.registry = _registry(base_url, api_key, organization)

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
