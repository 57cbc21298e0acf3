"""The seed's OrgLLMsManager: an organization's models under its own names, over the registry's REST
API (standard library only, so it runs anywhere).

    manager = OrgLLMsManager("http://switchboard:8000", api_key="sb-...")
    manager.register_model("summarizer", block_id="smollm2-135m-instruct")
    manager.get_model("summarizer")          # the block, camelCase
    manager.list_models()                     # {name: block}
    manager.unregister_model("summarizer")

    manager.register_model("shared", block_id="globex/summarizer")   # another organization's block: qualified id
"""

from __future__ import annotations

import urllib.parse
from typing import Any

from inference.sdk.http import DEFAULT_TIMEOUT_S, EnvelopeClient


class OrgLLMsManager(EnvelopeClient):
    """Register, unregister and look up an organization's models under its own names."""

    def __init__(self, base_url: str | None = None, api_key: str | None = None, *, org: str | None = None,
                 timeout: float = DEFAULT_TIMEOUT_S):
        super().__init__(base_url, api_key, timeout=timeout)
        self._org = org

    @property
    def org(self) -> str:
        if self._org is None:
            # A key belongs to exactly one organization; ask which.
            self._org = self._call("GET", "/api/whoami")["organization"]
        return self._org

    def _path(self, name: str | None = None) -> str:
        base = f"/api/orgs/{urllib.parse.quote(self.org)}/models"
        return base if name is None else f"{base}/{urllib.parse.quote(name, safe='')}"

    def register_model(self, name: str, block_id: str) -> dict[str, Any]:
        return self._call("POST", self._path(), {"name": name, "block_id": block_id})

    def unregister_model(self, name: str) -> None:
        self._call("DELETE", self._path(name))

    def get_model(self, name: str) -> dict[str, Any]:
        return self._call("GET", self._path(name))["block"]

    def list_models(self) -> dict[str, dict[str, Any]]:
        return {entry["name"]: entry["block"] for entry in self._call("GET", self._path())}
