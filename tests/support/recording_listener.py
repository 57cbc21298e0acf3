"""A TCP listener that records every connection it accepts, for the egress tests.

Bound on a loopback address (127.0.0.1, or 127.0.0.2: Linux routes all of 127/8 to `lo`), it plays
the internal service a block must not reach: a test asserts how many connections arrived (and
`reply` is what that service answers). With
`relay_to` it forwards each connection to another address (the gateway) and keeps the bytes the
client sent, so a test can count the requests that went round a loop.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time


class RecordingListener:
    def __init__(self, host: str = "127.0.0.1", *, relay_to: tuple[str, int] | None = None,
                 reply: bytes = b""):
        self.host = host
        self.relay_to = relay_to
        self.reply = reply  # sent back to each connection before hanging up (when not relaying)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, 0))
        self._sock.listen(64)
        self._sock.settimeout(0.1)
        self.port: int = self._sock.getsockname()[1]
        self.connections: list[tuple[str, int]] = []  # the peer of each accepted connection
        self._received: list[bytearray] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, daemon=True, name=f"recording-{host}")

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def received(self) -> bytes:
        """Everything clients sent, all connections together."""
        with self._lock:
            return b"".join(bytes(chunk) for chunk in self._received)

    def __enter__(self) -> RecordingListener:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, peer = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.connections.append(peer)
                buffer = bytearray()
                self._received.append(buffer)
            threading.Thread(target=self._serve, args=(conn, buffer), daemon=True).start()

    def _serve(self, conn: socket.socket, buffer: bytearray) -> None:
        if self.relay_to is None:
            # Keep what the first read brings, then hang up: the client fails at once, no timeout.
            conn.settimeout(1)
            with contextlib.suppress(OSError):
                data = conn.recv(65536)
                with self._lock:
                    buffer.extend(data)
                if self.reply:
                    conn.sendall(self.reply)
            conn.close()
            return
        upstream = socket.create_connection(self.relay_to, timeout=10)
        threading.Thread(target=self._pipe, args=(upstream, conn, None), daemon=True).start()
        self._pipe(conn, upstream, buffer)

    def _pipe(self, source: socket.socket, sink: socket.socket | None, buffer: bytearray | None) -> None:
        source.settimeout(10)
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                if buffer is not None:
                    with self._lock:
                        buffer.extend(data)
                if sink is not None:
                    sink.sendall(data)
        for sock in (source, sink):
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def wait_quiet(self, seconds: float = 0.3) -> None:
        """Give a connection that is on its way the time to arrive before a test counts."""
        time.sleep(seconds)
