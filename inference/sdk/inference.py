"""Inference over HTTP: the seed's OpenAIInferenceAPI, and running a registry block on a server by id
(what KnownLLMs.run_ai_inference and estimate do remotely). Standard library only, never Django.

A block runs on the server that holds it: `POST {base_url}/v1/chat/completions` with the API key,
so the server applies that key's organization, policies and quotas; its estimate is `POST
{base_url}/discovery/estimate`. Failures raise BackendError carrying the server's status.
"""

from __future__ import annotations

from typing import Any

from inference.backends.base import BackendError, ChatRequest, LLMInferenceAPI
from inference.backends.messages import chat_request_from_input, messages_from_input
from inference.sdk.http import (
    RegistryError,
    default_key,
    default_url,
    error_message,
    refused,
    request_json,
)

# The sampling fields of the seed's input_data that a chat request carries on.
SAMPLING_FIELDS = ("max_tokens", "temperature", "top_p", "stop", "seed")


def checked_input(input_data: Any) -> dict:
    if not isinstance(input_data, dict):
        raise BackendError("input_data must be a dict", status=400, code="invalid_request_error")
    return input_data


def chat_request(input_data: dict, *, model: str) -> ChatRequest:
    try:
        return chat_request_from_input(input_data, model=model)
    except ValueError as exc:
        raise BackendError(str(exc), status=400, code="invalid_request_error") from exc


def chat_body(input_data: dict, *, model: str) -> dict[str, Any]:
    """The /v1/chat/completions body for the seed's free-form input_data."""
    request = chat_request(input_data, model=model)
    body: dict[str, Any] = {"model": model, "messages": messages_from_input(input_data)}
    for name in SAMPLING_FIELDS:
        value = getattr(request, name)
        if value is not None:
            body[name] = value
    return body


def answer_text(url: str, status: int, payload: Any) -> str:
    if status != 200:
        raise refused(url, status, payload)
    try:
        return payload["choices"][0]["message"].get("content") or ""
    except (KeyError, IndexError, TypeError, AttributeError) as exc:
        raise BackendError(f"{url} answered with no choices[0].message", status=502) from exc


def run_ai_inference(*, base_url: str, block_id: str, input_data: dict, api_key: str | None = None,
                     session_id: str = "", frame_ptr: bytes = b"") -> str:
    """The answer's text of the server's block `block_id` (its name as the key's organization sees it)."""
    body = chat_body(checked_input(input_data), model=block_id)
    # Only sent when set: the gateway hands them to gRPC backends, which keep sessions.
    if session_id:
        body["session_id"] = session_id
    if frame_ptr:
        body["frame_ptr"] = frame_ptr.decode(errors="replace")
    url = f"{base_url.rstrip('/')}/v1/chat/completions"
    return answer_text(url, *request_json("POST", url, body, api_key=api_key))


def estimate(*, base_url: str, block_id: str, api_key: str | None = None, session_id: str = "",
             query: dict | None = None) -> dict:
    """The server's estimate for running `query` on the block: its envelope's `data`."""
    body = {"block_id": block_id, "session_id": session_id, "search_query": query or {}}
    url = f"{base_url.rstrip('/')}/discovery/estimate"
    status, payload = request_json("POST", url, body, api_key=api_key)
    if status == 404 and not (isinstance(payload, dict) and "success" in payload):
        raise BackendError(f"{url} does not exist: the server at this base_url has no estimator endpoint",
                           status=404, code="not_found", upstream_status=404)
    if status != 200 or not isinstance(payload, dict) or not payload.get("success"):
        raise refused(url, status, payload)
    data = payload.get("data")
    return data if isinstance(data, dict) else {"data": data}


def v1_url(base_url: str, path: str) -> str:
    """`base_url` may be a server's root (Switchboard's habit) or end in /v1 (OpenAI clients' habit)."""
    root = base_url.rstrip("/")
    return f"{root}{path}" if root.endswith("/v1") else f"{root}/v1{path}"


class OpenAIInferenceAPI(LLMInferenceAPI):
    """The seed's backend for an OpenAI-compatible chat API, Switchboard's /v1 by default.

        OpenAIInferenceAPI(api_key="sb-...", model="smollm2-135m-instruct")

    `base_url` defaults to $SWITCHBOARD_URL, else http://127.0.0.1:8000 (a root, or a URL ending in
    /v1 such as https://api.openai.com/v1); `api_key` to $SWITCHBOARD_API_KEY. `defaults` are
    sampling fields (max_tokens, temperature, ...) for every request; input_data's own win.
    Failures raise RegistryError with the server's message and status (None when unreachable).
    """

    def __init__(self, api_key: str | None = None, model: str | None = None, base_url: str | None = None, *,
                 timeout: float | None = None, **defaults: Any):
        if not isinstance(model, str) or not model:
            raise ValueError("OpenAIInferenceAPI needs model='<the model's name on the server>'")
        unknown = sorted(set(defaults) - set(SAMPLING_FIELDS))
        if unknown:
            raise TypeError(f"OpenAIInferenceAPI got unknown sampling fields {unknown}; use {list(SAMPLING_FIELDS)}")
        self.api_key = default_key(api_key)
        self.model = model
        self.base_url = (base_url or default_url()).rstrip("/")
        self.timeout = timeout
        self.defaults = defaults

    def run_inference(self, input_data: dict) -> str:
        """The model's answer to the seed's input_data ({"prompts": [...]}, {"messages": [...]}, {"text": ...})."""
        url = v1_url(self.base_url, "/chat/completions")
        try:
            body = chat_body({**self.defaults, **checked_input(input_data)}, model=self.model)
            return answer_text(url, *request_json("POST", url, body, api_key=self.api_key, timeout=self.timeout))
        except BackendError as exc:
            raise RegistryError(exc.message, exc.upstream_status) from None

    def check_execute(self, query: dict) -> tuple[bool, Any]:
        """Whether the server serves this model to this key: (True, the model object) or (False, why)."""
        url = v1_url(self.base_url, f"/models/{self.model}")
        try:
            status, payload = request_json("GET", url, api_key=self.api_key, timeout=self.timeout)
        except BackendError as exc:
            return False, {"status": None, "message": exc.message}
        if status != 200:
            return False, {"status": status, "message": error_message(payload)}
        return True, payload

    def get_current_estimates(self) -> tuple[bool, Any]:
        """Switchboard's current estimates for the model (recent latency, queue depth, remaining quota:
        /discovery/estimate); (False, why) from a server without them."""
        root = self.base_url.removesuffix("/v1")
        try:
            return True, estimate(base_url=root, api_key=self.api_key, block_id=self.model,
                                  query={"input_size": 0})
        except BackendError as exc:
            return False, {"status": exc.upstream_status, "message": exc.message}
