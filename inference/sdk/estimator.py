"""The seed's AIOSEstimatorClient: estimates and feasibility before running a block, from the server's
`POST /discovery/estimate` and `POST /discovery/check_execute` (inference/estimator.py computes them).

    estimator = AIOSEstimatorClient("http://switchboard:8000", api_key="sb-...")
    estimator.estimate("Summarize this ...", block_id="smollm2-135m-instruct")
    ok, data = estimator.check_execute("Summarize this ...", {"max_tokens": 64}, "smollm2-135m-instruct")
"""

from __future__ import annotations

from typing import Any

from inference.sdk.http import EnvelopeClient


class AIOSEstimatorClient(EnvelopeClient):
    """Pre-execution estimates: POST /discovery/estimate and /discovery/check_execute."""

    def estimate(self, search_query: Any, block_id: str) -> dict[str, Any]:
        return self._call("POST", "/discovery/estimate", {"search_query": search_query, "block_id": block_id})

    def check_execute(self, search_query: Any, query_params: dict[str, Any] | None,
                      block_id: str) -> tuple[bool, dict[str, Any]]:
        data = self._call("POST", "/discovery/check_execute",
                          {"search_query": search_query, "query_params": query_params or {}, "block_id": block_id})
        return bool(data["executable"]), data
