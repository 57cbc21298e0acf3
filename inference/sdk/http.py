"""The SDK's HTTP to a Switchboard (or any OpenAI-compatible) server, standard library only so the
SDK needs no HTTP library and no Django: JSON in; out, the registry's `{"success", "data"|"message"}`
envelope (envelope_call) or an OpenAI-shaped answer (post_json, get_json)."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from inference.backends.base import BackendError

DEFAULT_TIMEOUT_S = 30.0
# The server's UPSTREAM_TIMEOUT_S default, read from the environment as webapp.settings does: a
# remote caller has no Django settings to read it from. Inference calls wait this long.
DEFAULT_INFERENCE_TIMEOUT_S = 120.0
# Where the seed's OpenAIInferenceAPI (and any client given no URL) finds the server, and its key.
URL_VARIABLE = "SWITCHBOARD_URL"
KEY_VARIABLE = "SWITCHBOARD_API_KEY"
DEFAULT_URL = "http://127.0.0.1:8000"


class RegistryError(Exception):
    """The server refused a request; `message` is its envelope's message, `status` the HTTP status
    (None when the server could not be reached)."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(f"{message} (HTTP {status})" if status else message)
        self.message = message
        self.status = status


# The server's refusals; one exception type for every Python client of this project.
SwitchboardError = RegistryError


def default_url() -> str:
    return os.environ.get(URL_VARIABLE) or DEFAULT_URL


def default_key(api_key: str | None) -> str | None:
    """The key given, else SWITCHBOARD_API_KEY (so a script keeps its key out of its code)."""
    return api_key if api_key is not None else os.environ.get(KEY_VARIABLE) or None


def inference_timeout() -> float:
    return float(os.environ.get("UPSTREAM_TIMEOUT_S") or DEFAULT_INFERENCE_TIMEOUT_S)


def _headers(api_key: str | None, *, body: bool) -> dict[str, str]:
    headers = {"Accept": "application/json"}
    if body:
        headers["Content-Type"] = "application/json"
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    return headers


def envelope_call(base_url: str, method: str, path: str, *, api_key: str | None = None, body: Any = None,
                  params: dict | None = None, timeout: float = DEFAULT_TIMEOUT_S) -> dict:
    """The whole reply envelope of one call; an HTTP error raises RegistryError with its message."""
    url = f"{base_url.rstrip('/')}{path}"
    if params:
        url += "?" + urllib.parse.urlencode(params)
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=_headers(api_key, body=data is not None))
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (a server we were given)
            return json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            message = json.loads(raw).get("message") or raw.decode(errors="replace")
        except (ValueError, AttributeError):
            message = raw.decode(errors="replace")[:500] or exc.reason
        raise RegistryError(str(message), exc.code) from None
    except urllib.error.URLError as exc:
        raise RegistryError(f"cannot reach the registry at {base_url}: {exc.reason}") from None


class EnvelopeClient:
    """A client of the envelope-answering endpoints: `data` out, a refusal raised as RegistryError."""

    def __init__(self, base_url: str | None = None, api_key: str | None = None, *,
                 timeout: float = DEFAULT_TIMEOUT_S):
        self.base_url = (base_url or default_url()).rstrip("/")
        self.api_key = default_key(api_key)
        self.timeout = timeout

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        payload = envelope_call(self.base_url, method, path, api_key=self.api_key, body=body, timeout=self.timeout)
        if not payload.get("success", False):
            raise RegistryError(payload.get("message", "request failed"), 200)
        return payload.get("data")


def request_json(method: str, url: str, body: dict | None = None, *, api_key: str | None,
                 timeout: float | None = None) -> tuple[int, Any]:
    """(status, decoded answer) of one call, whatever the status; an unreachable server raises a
    BackendError (502, `upstream_unreachable`)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers=_headers(api_key, body=data is not None), method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout or inference_timeout()) as resp:  # noqa: S310
            status, payload = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, payload = exc.code, exc.read()
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise BackendError(f"cannot reach {url}: {reason}", status=502, code="upstream_unreachable") from exc
    try:
        return status, json.loads(payload) if payload else None
    except ValueError:
        return status, payload.decode(errors="replace")[:500]


def error_message(payload: Any) -> str:
    """The message of an OpenAI-shaped error or of a failed envelope."""
    if isinstance(payload, dict):
        error = payload.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if payload.get("message"):
            return str(payload["message"])
    return str(payload)


def refused(url: str, status: int, payload: Any) -> BackendError:
    """A non-2xx answer as a BackendError keeping the server's status and message."""
    return BackendError(f"{url} answered {status}: {error_message(payload)}",
                        status=status if 400 <= status < 600 else 502, code="remote_error",
                        upstream_status=status)
