"""The seed's low-level `Runtime` (docs/runtime.md): operators and components called by name, answers
streamed back as packets until one says `finish`.

    from inference.sdk import Runtime

    rt = Runtime()                                      # $SWITCHBOARD_URL if set, else in this process
    rt = Runtime("http://host:8000", api_key="sb-...")  # a server, over its WebSocket /ws/runtime/
    rt.call("echo", {"text": "Hello world"})            # None for no packet, the body of one, a list of several
    rt.define("language_model", "lm0", {"model": "smollm2-135m-instruct"})
    for resp in rt.call_iter_method("lm0", "infer", {"messages": [...]}): ...
    rt.delete("lm0"); rt.stop()                          # or: with Runtime() as rt: ...

Remote mode needs the standard library and `websockets`, never Django. In-process mode (no URL) runs the
server's own VM (inference/runtime/vm.py) for the `local` organization as its owner, like the embedded
default's localhost access (modes.py loads it after django.setup()). A refusal raises VMError with the
VM's reason.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterator
from typing import Any, Protocol
from urllib.parse import urlsplit

from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.sync.client import connect

from inference.sdk import modes
from inference.sdk.http import URL_VARIABLE, SwitchboardError, default_key, inference_timeout


class VMError(SwitchboardError):
    """The VM refused or failed a request: `message` its reason, `status` the HTTP status it stands for,
    `code` a stable machine-readable reason."""

    def __init__(self, message: str, status: int | None = None, code: str | None = None):
        super().__init__(message, status)
        self.code = code


class VM(Protocol):
    def request(self, frame: dict[str, Any]) -> Iterator[Any]: ...
    def close(self) -> None: ...


def _failure(body: Any) -> VMError:
    body = body if isinstance(body, dict) else {}
    return VMError(str(body.get("message") or "the runtime request failed"), body.get("http_status"), body.get("code"))


class RemoteVM:
    """One WebSocket to the server's /ws/runtime/, opened on first use; requests carry ids."""

    def __init__(self, base_url: str, api_key: str | None, timeout: float | None = None):
        parts = urlsplit(base_url.rstrip("/"))
        scheme = "wss" if parts.scheme == "https" else "ws"
        self.url = f"{scheme}://{parts.netloc}{parts.path}/ws/runtime/"
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self.api_key = api_key
        self.timeout = timeout or inference_timeout()
        self._socket: Any = None
        # Frames of a request the caller stopped reading (a generator closed early) are skipped as they come.
        self._ids = itertools.count(1)

    def _connection(self) -> Any:
        if self._socket is None:
            headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else None
            # legacy=True: the connection itself, kept open across calls (not only inside a with-block).
            try:
                self._socket = connect(self.url, origin=self.origin, additional_headers=headers,
                                       open_timeout=self.timeout, max_size=64 * 1024 * 1024, legacy=True)
            except (InvalidHandshake, OSError, TimeoutError) as exc:
                raise VMError(f"cannot open {self.url}: {exc}") from None
        return self._socket

    def _next(self) -> dict[str, Any]:
        try:
            return json.loads(self._connection().recv(timeout=self.timeout))
        except TimeoutError:
            raise VMError(f"no answer from {self.url} within {self.timeout} s", 504, "timeout") from None
        except ConnectionClosed as exc:
            self._socket = None  # The next request opens a new one.
            code = exc.rcvd.code if exc.rcvd is not None else None
            raise VMError(f"the runtime socket closed ({exc})", 401 if code == 4401 else None, "socket_closed") from None

    def request(self, frame: dict[str, Any]) -> Iterator[Any]:
        request_id = next(self._ids)
        try:
            self._connection().send(json.dumps({**frame, "id": request_id}))
        except ConnectionClosed:
            pass  # The server closed the socket: what it said first (a refused key) is read below.
        finished = False
        try:
            while True:
                packet = self._next()
                if packet.get("id") != request_id:
                    if packet.get("id") is None and packet.get("status") == "error":
                        finished = True
                        raise _failure(packet.get("body"))  # The socket itself was refused (a bad key).
                    continue
                finished = bool(packet.get("finish"))
                if packet.get("status") == "error":
                    raise _failure(packet.get("body"))
                if packet.get("status") == "cancelled":
                    raise VMError("the request was cancelled", None, "cancelled")
                if "body" in packet:
                    yield packet["body"]
                if finished:
                    return
        finally:
            if not finished and self._socket is not None:
                # The caller stopped reading: cancel it on the server (the model stops generating).
                try:
                    self._socket.send(json.dumps({"type": "cancel", "id": request_id}))
                except ConnectionClosed:
                    self._socket = None

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def _collapse(bodies: list[Any]) -> Any:
    if not bodies:
        return None
    return bodies[0] if len(bodies) == 1 else bodies


class Runtime:
    """The seed's Runtime. `url`: a Switchboard server (default $SWITCHBOARD_URL); none means this process's
    own VM, acting for `organization` (a slug; default the built-in `local` one)."""

    def __init__(self, url: str | None = None, api_key: str | None = None, *, organization: str | None = None,
                 timeout: float | None = None):
        url = url or os.environ.get(URL_VARIABLE)
        self._vm: VM = RemoteVM(url, default_key(api_key), timeout) if url else modes.runtime_vm(organization)

    def call_iter(self, func_name: str, inputs: Any = None) -> Iterator[Any]:
        return self._vm.request({"type": "call_function", "function": func_name,
                                 "input": {} if inputs is None else inputs})

    def call(self, func_name: str, inputs: Any = None) -> Any:
        return _collapse(list(self.call_iter(func_name, inputs)))

    def define(self, comp_type: str, comp_name: str, attrs: dict[str, Any] | None = None) -> None:
        list(self._vm.request({"type": "define_component", "component_type": comp_type, "component_name": comp_name,
                               "attrs": attrs or {}}))

    def delete(self, comp_name: str) -> None:
        list(self._vm.request({"type": "delete_component", "component_name": comp_name}))

    def call_iter_method(self, comp_name: str, func_name: str, inputs: Any = None) -> Iterator[Any]:
        return self._vm.request({"type": "call_method", "component_name": comp_name, "method": func_name,
                                 "input": {} if inputs is None else inputs})

    def call_method(self, comp_name: str, func_name: str, inputs: Any = None) -> Any:
        return _collapse(list(self.call_iter_method(comp_name, func_name, inputs)))

    def stop(self) -> None:
        self._vm.close()

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
