"""Reads of the context window store, always within one organization: another organization's session
is the same 404 as a missing one."""

from __future__ import annotations

from django.db.models import QuerySet

from inference.context_window.models import ChatSession, SessionMessage
from registry.models import Organization


def sessions_of(organization: Organization) -> QuerySet[ChatSession]:
    return ChatSession.objects.filter(organization=organization).order_by("-updated_at")


def session_get(*, organization: Organization, session_id: str) -> ChatSession | None:
    return ChatSession.objects.filter(organization=organization, session_id=session_id).first()


def session_messages(session: ChatSession | None) -> list[SessionMessage]:
    if session is None:
        return []
    return list(SessionMessage.objects.filter(session=session).order_by("pk"))


def history_of(*, organization: Organization, session_id: str) -> list[dict]:
    """The session's messages as chat messages ([] for a session not yet written)."""
    rows = SessionMessage.objects.filter(session__organization=organization, session__session_id=session_id) \
        .order_by("pk").values_list("role", "content", "name")
    return [{"role": role, "content": content, **({"name": name} if name else {})} for role, content, name in rows]
