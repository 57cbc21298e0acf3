"""Plain HTTP for tests: what the openai client would refuse to send, and the small JSON probes."""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass
class Reply:
    status: int
    headers: dict[str, str]  # names lower-cased
    body: bytes

    def json(self):
        return json.loads(self.body)


def request(method: str, url: str, body: bytes | str | None = None, headers: dict[str, str] | None = None,
            timeout: float = 10) -> Reply:
    """One HTTP request, sent as given (malformed bodies included); any status comes back as a Reply."""
    parsed = urlsplit(url)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=timeout)
    try:
        conn.request(method, parsed.path + (f"?{parsed.query}" if parsed.query else ""),
                     body=body.encode() if isinstance(body, str) else body, headers=headers or {})
        resp = conn.getresponse()
        return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()


def get_json(url: str, timeout: float = 2.0):
    """GET and decode; an error status raises (urllib.error.HTTPError, an OSError)."""
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read())


def call_json(url: str, body: dict | None = None, timeout: float = 10.0) -> tuple[int, dict]:
    """GET, or POST `body` as JSON, and decode the answer: (status, JSON); an error status raises."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return resp.status, json.loads(resp.read())


def fetch(url: str, headers: dict[str, str] | None = None, timeout: float = 10.0) -> tuple[int, str, bytes]:
    """GET anything: (status, Content-Type, body), for any status."""
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read()
