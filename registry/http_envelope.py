"""The Python clients' one HTTP call to a Switchboard server (stdlib only, so the SDKs need no
HTTP library): JSON in, the `{"success", "data"|"message"}` envelope out, errors raised."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any


class RegistryError(Exception):
    """The server refused a request; `message` is its envelope's message, `status` the HTTP status."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(f"{message} (HTTP {status})" if status else message)
        self.message = message
        self.status = status


def envelope_call(base_url: str, method: str, path: str, *, api_key: str | None = None, body: Any = None,
                  params: dict | None = None, timeout: float = 30.0) -> dict:
    """The whole reply envelope of one call; an HTTP error raises RegistryError with its message."""
    url = f"{base_url.rstrip('/')}{path}"
    if params:
        url += "?" + urllib.parse.urlencode(params)
    headers = {"Accept": "application/json"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
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
