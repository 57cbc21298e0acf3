"""A client that hangs up mid-stream makes the gateway close the upstream request at once."""

from __future__ import annotations

import json
import socket
import time
from urllib.parse import urlsplit

import pytest

pytestmark = pytest.mark.django_db(transaction=True)


def open_stream(gateway, key: str, model: str, stream: bool = True) -> socket.socket:
    parsed = urlsplit(gateway.url)
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": "count"}],
                       "stream": stream}).encode()
    sock = socket.create_connection((parsed.hostname, parsed.port), timeout=5)
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + key.encode()
                 + b"\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    return sock


def read_until(sock: socket.socket, marker: bytes) -> bytes:
    seen = b""
    while marker not in seen:
        data = sock.recv(65536)
        assert data, f"the stream ended before {marker!r}: {seen!r}"
        seen += data
    return seen


def test_a_client_hangup_mid_stream_closes_the_upstream_within_100_ms(
        live_gateway, owner, upstream_block, fake_upstream):
    upstream_block(owner.organization, "delay50-chunks40", block_id="acme-slow")
    aborted_before = fake_upstream.stats.streams_aborted
    sock = open_stream(live_gateway, owner.key, "acme-slow")
    read_until(sock, b"tok2 ")  # Mid-stream: a few 50 ms chunks have passed, dozens remain.
    sock.close()
    hung_up = time.monotonic()

    deadline = hung_up + 2
    while fake_upstream.stats.streams_aborted == aborted_before and time.monotonic() < deadline:
        time.sleep(0.002)
    assert fake_upstream.stats.streams_aborted == aborted_before + 1, "the upstream stream was never closed"
    assert fake_upstream.stats.aborted_at[-1] - hung_up < 0.100


def test_a_stream_that_runs_to_the_end_is_not_counted_as_aborted(live_gateway, owner, upstream_block,
                                                                 fake_upstream):
    upstream_block(owner.organization, "delay5-chunks4", block_id="acme-short")
    completed, aborted = fake_upstream.stats.streams_completed, fake_upstream.stats.streams_aborted
    sock = open_stream(live_gateway, owner.key, "acme-short")
    read_until(sock, b"data: [DONE]")
    sock.close()
    time.sleep(0.05)
    assert fake_upstream.stats.streams_completed == completed + 1
    assert fake_upstream.stats.streams_aborted == aborted


def test_a_client_hangup_before_a_non_streamed_answer_closes_the_upstream_too(
        live_gateway, owner, upstream_block, fake_upstream):
    upstream_block(owner.organization, "wait3000", block_id="acme-thinking")
    aborted_before = fake_upstream.stats.waits_aborted
    sock = open_stream(live_gateway, owner.key, "acme-thinking", stream=False)
    time.sleep(0.3)  # The upstream is now thinking about its answer.
    sock.close()
    hung_up = time.monotonic()
    deadline = hung_up + 2
    while fake_upstream.stats.waits_aborted == aborted_before and time.monotonic() < deadline:
        time.sleep(0.002)
    assert fake_upstream.stats.waits_aborted == aborted_before + 1, "the upstream request was never closed"
    assert fake_upstream.stats.aborted_at[-1] - hung_up < 0.100
