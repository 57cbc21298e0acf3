"""Server-sent events as a test reads them: (id, data) per event, and the text of chat chunks."""

from __future__ import annotations

import orjson


def sse_events(body: bytes) -> list[tuple[str | None, dict | str]]:
    """Each event's `id:` (or None) and its `data:` decoded (the "[DONE]" sentinel kept as a string)."""
    events = []
    for frame in body.decode().split("\n\n"):
        if not frame.strip():
            continue
        event_id, data = None, None
        for line in frame.split("\n"):
            if line.startswith("id: "):
                event_id = line[4:]
            elif line.startswith("data: "):
                data = line[6:]
        events.append((event_id, data if data == "[DONE]" else orjson.loads(data)))
    return events


def text_of(events) -> str:
    """The content of the chat.completion.chunk events, joined."""
    return "".join(e["choices"][0]["delta"].get("content", "") for _, e in events if isinstance(e, dict)
                   and e.get("choices"))
