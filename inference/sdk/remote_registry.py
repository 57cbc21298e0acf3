"""The registry as the SDK's managers use it, and its remote side: the REST API over HTTP
(the in-process side, on the ORM, is in_process.py; modes.py picks one)."""

from __future__ import annotations

import urllib.parse
from typing import Any, Protocol

from inference.sdk.http import DEFAULT_TIMEOUT_S, envelope_call

PAGE_SIZE = 1000


class Registry(Protocol):
    """Blocks as camelCase dicts; every refusal raises RegistryError with the API's status."""

    def get(self, block_id: str) -> dict: ...

    def create(self, block_data: dict) -> dict: ...

    def delete(self, block_id: str) -> None: ...

    def query(self, payload: Any) -> list[dict]: ...

    def similarity(self, payload: Any) -> list[dict]: ...


class RemoteRegistry:
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
