"""Writes of the context window store: append, trim to a block's context, delete, and the exchange a
chat request with a `session_id` adds (hook.py)."""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings
from django.db import transaction

from inference.backends.factory import own_backend_for_block
from inference.context_window.models import ChatSession, SessionMessage
from inference.context_window.selectors import session_messages
from inference.estimator import count_prompt_tokens
from registry.models import Block, Organization

SESSION_ID = re.compile(r"^[A-Za-z0-9._:@-]{1,128}$")
# Tool turns are not kept: their ids tie them to one request's tool calls.
ROLES = ("system", "developer", "user", "assistant")
# Kept at the head of a session when it is trimmed: they set up every later turn.
STANDING_ROLES = ("system", "developer")
# Block metadata that may declare a context length when the backend does not know its own.
CONTEXT_KEYS = ("contextLength", "context_length", "n_ctx")


class SessionError(Exception):
    def __init__(self, message: str, *, status: int = 400, param: str | None = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.param = param


def check_session_id(value: Any, param: str = "session_id") -> str:
    if not isinstance(value, str) or not SESSION_ID.match(value):
        raise SessionError(f"'{param}' must be 1-128 characters of letters, digits and . _ : @ -", param=param)
    return value


def check_messages(messages: Any, param: str = "messages") -> list[dict[str, Any]]:
    if not isinstance(messages, list) or not messages:
        raise SessionError(f"'{param}' must be a non-empty list of messages", param=param)
    checked = []
    for i, message in enumerate(messages):
        where = f"{param}[{i}]"
        if not isinstance(message, dict):
            raise SessionError(f"'{where}' must be an object", param=where)
        if message.get("role") not in ROLES:
            raise SessionError(f"'{where}.role' must be one of {', '.join(ROLES)}", param=f"{where}.role")
        content = message.get("content")
        if not isinstance(content, str | list) or (isinstance(content, list) and not all(
                isinstance(p, dict) and isinstance(p.get("type"), str) for p in content)):
            raise SessionError(f"'{where}.content' must be a string or a list of content parts",
                               param=f"{where}.content")
        name = message.get("name", "")
        if not isinstance(name, str) or len(name) > 64:
            raise SessionError(f"'{where}.name' must be a string of at most 64 characters", param=f"{where}.name")
        checked.append({"role": message["role"], "content": content, **({"name": name} if name else {})})
    return checked


def session_append(*, organization: Organization, session_id: str, messages: list[dict[str, Any]],
                   user=None) -> ChatSession:
    """Append messages (checked by check_messages) to a session, making it if it does not exist."""
    with transaction.atomic():
        session, _ = ChatSession.objects.get_or_create(organization=organization, session_id=session_id,
                                                       defaults={"created_by": user})
        # One writer at a time per session: the cap holds and a turn's messages stay together.
        ChatSession.objects.select_for_update().filter(pk=session.pk).first()
        held = SessionMessage.objects.filter(session=session).count()
        if held + len(messages) > settings.CONTEXT_SESSION_MAX_MESSAGES:
            raise SessionError(f"session '{session_id}' would hold {held + len(messages)} messages; the limit is "
                               f"{settings.CONTEXT_SESSION_MAX_MESSAGES} (trim it first)", status=409)
        SessionMessage.objects.bulk_create([
            SessionMessage(session=session, role=m["role"], content=m["content"], name=m.get("name", ""))
            for m in messages])
        session.save(update_fields=["updated_at"])
    return session


def session_record_exchange(*, organization: Organization, session_id: str, request_messages: list[dict[str, Any]],
                            answer: str, user=None) -> None:
    """After a chat request that named the session: its messages, then the answer. A system or developer
    message the session already holds is not stored again (clients resend their system prompt)."""
    with transaction.atomic():
        standing = set(SessionMessage.objects.filter(
            session__organization=organization, session__session_id=session_id, role__in=STANDING_ROLES)
            .values_list("role", "content"))
        new = [m for m in request_messages
               if not (m["role"] in STANDING_ROLES and (m["role"], m["content"]) in standing)]
        session_append(organization=organization, session_id=session_id, user=user,
                       messages=check_messages(new + [{"role": "assistant", "content": answer}]))


def context_length(block: Block) -> int | None:
    """The block's context in tokens: its backend's own (llamacpp's n_ctx), else its metadata's."""
    try:
        own = getattr(own_backend_for_block(block), "n_ctx", None)
    except Exception:  # a backend that cannot be built has no context to tell
        own = None
    if isinstance(own, int) and own > 0:
        return own
    for key in CONTEXT_KEYS:
        value = (block.metadata or {}).get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def session_trim(*, session: ChatSession, block: Block, max_tokens: int | None = None,
                 reserve: int = 0) -> dict[str, Any]:
    """Drop the oldest messages (never the system or developer ones) until the session fits in
    `max_tokens` (default: the block's context length) less `reserve` (room for the answer), counted
    with the block's tokenizer where its backend has one, else the estimator's documented estimate."""
    limit = max_tokens or context_length(block)
    if limit is None:
        # 422: a well-formed request the named block cannot serve (no schema can know the block).
        raise SessionError("this block declares no context length; give 'max_tokens'", param="max_tokens",
                           status=422)
    target = limit - reserve
    if target <= 0:
        # 422: each number is valid alone; together (or with the block's context) they leave no room.
        raise SessionError(f"'reserve' ({reserve}) leaves no room in {limit} tokens", param="reserve", status=422)
    rows = session_messages(session)
    standing = [r for r in rows if r.role in STANDING_ROLES]
    others = [r for r in rows if r.role not in STANDING_ROLES]

    def tokens(cut: int) -> tuple[int, str]:
        kept = sorted(standing + others[cut:], key=lambda r: r.pk)
        return count_prompt_tokens(block, [{"role": r.role, "content": r.content} for r in kept])

    # The fewest oldest messages to drop: tokens(cut) only falls as cut grows, so bisect.
    low, high = 0, len(others)
    counted = tokens(0)
    if counted[0] > target:
        while low < high:
            middle = (low + high) // 2
            if tokens(middle)[0] <= target:
                high = middle
            else:
                low = middle + 1
        counted = tokens(low)
    removed = others[:low]
    SessionMessage.objects.filter(pk__in=[r.pk for r in removed]).delete()
    return {"removed": len(removed), "kept": len(rows) - len(removed), "tokens": counted[0], "limit": limit,
            "reserve": reserve, "fits": counted[0] <= target, "tokenCounting": counted[1]}


def session_delete(*, session: ChatSession) -> None:
    session.delete()
