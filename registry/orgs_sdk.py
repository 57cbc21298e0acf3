"""Python clients for the organization registry and the estimator (the seed's OrgLLMsManager
and AIOSEstimatorClient). Standard library only, so they run anywhere.

    manager = OrgLLMsManager("http://switchboard:8000", api_key="sb-...")
    manager.register_model("summarizer", block_id="smollm2-135m-instruct")
    manager.get_model("summarizer")          # the block, camelCase
    manager.list_models()                     # {name: block}
    manager.unregister_model("summarizer")

    manager.register_model("shared", block_id="globex/summarizer")   # another organization's block: qualified id

    estimator = AIOSEstimatorClient("http://switchboard:8000", api_key="sb-...")
    estimator.estimate("Summarize this ...", block_id="smollm2-135m-instruct")
    ok, data = estimator.check_execute("Summarize this ...", {"max_tokens": 64}, "smollm2-135m-instruct")
"""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from registry.http_envelope import RegistryError, envelope_call

# The server's refusals; one exception type for every Python client of this project.
SwitchboardError = RegistryError


class _Client:
    def __init__(self, base_url: str, api_key: str | None = None, *, timeout: float = 30.0):
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        payload = envelope_call(self.base_url, method, path, api_key=self.api_key, body=body, timeout=self.timeout)
        if not payload.get("success", False):
            raise SwitchboardError(payload.get("message", "request failed"), 200)
        return payload.get("data")


class OrgLLMsManager(_Client):
    """Register, unregister and look up an organization's models under its own names."""

    def __init__(self, base_url: str, api_key: str, *, org: str | None = None, timeout: float = 30.0):
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


class AIOSEstimatorClient(_Client):
    """Pre-execution estimates: POST /discovery/estimate and /discovery/check_execute."""

    def estimate(self, search_query: Any, block_id: str) -> dict[str, Any]:
        return self._call("POST", "/discovery/estimate", {"search_query": search_query, "block_id": block_id})

    def check_execute(self, search_query: Any, query_params: dict[str, Any] | None,
                      block_id: str) -> tuple[bool, dict[str, Any]]:
        data = self._call("POST", "/discovery/check_execute",
                          {"search_query": search_query, "query_params": query_params or {}, "block_id": block_id})
        return bool(data["executable"]), data
