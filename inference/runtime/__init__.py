"""The low-level Runtime (docs/runtime.md): operators and stateful components called by name, over
HTTP and WebSocket, with packets that stream back until one says `finish`."""
