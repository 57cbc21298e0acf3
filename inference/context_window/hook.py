"""The gateway's side of the context window: a chat request whose body names a `session_id` gets the
session's history before its own messages, and, once answered, its messages and the answer appended.

`session_id` stays in the body: gRPC backends (the seed's AIOS packets) still receive it, so one id
names one conversation in this store and upstream. A request that fails, or whose client leaves
before the end of a stream, appends nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from inference.context_window import selectors, services
from inference.gateway.errors import OpenAIError
from registry.asyncdb import in_db_thread
from registry.principal import Principal

log = logging.getLogger(__name__)


@dataclass
class SessionTurn:
    principal: Principal
    session_id: str
    messages: list[dict[str, Any]]  # the request's own, appended with the answer

    async def answered(self, answer: str) -> None:
        try:
            await _arecord(self.principal, self.session_id, self.messages, answer)
        except Exception:
            # The answer was served: trouble keeping it (the database is down, or a concurrent turn
            # filled the session) must not turn it into an error. The session misses this turn.
            log.exception("could not append a turn to session %r", self.session_id)


def _record(principal: Principal, session_id: str, messages: list[dict[str, Any]], answer: str) -> None:
    user = principal.user if getattr(principal.user, "pk", None) is not None else (
        principal.api_key.created_by if principal.api_key is not None else None)
    services.session_record_exchange(organization=principal.organization, session_id=session_id,
                                     request_messages=messages, answer=answer, user=user)


_arecord = in_db_thread(_record)
_ahistory = in_db_thread(selectors.history_of)


async def attach_session(principal: Principal, body: dict[str, Any], *, text: bool = False
                         ) -> tuple[dict[str, Any], SessionTurn | None]:
    """(the body with the history first, the turn to record) or (body, None) without a session_id."""
    session_id = body.get("session_id")
    if session_id is None or session_id == "":
        return body, None
    try:
        services.check_session_id(session_id)
        if text:
            raise services.SessionError("'session_id' keeps chat messages: use /v1/chat/completions")
        messages = services.check_messages(body.get("messages"))
    except services.SessionError as exc:
        raise OpenAIError(400, exc.message, param=exc.param, code="invalid_value") from None
    history = await _ahistory(organization=principal.organization, session_id=session_id)
    if len(history) + len(messages) + 1 > settings.CONTEXT_SESSION_MAX_MESSAGES:
        raise OpenAIError(409, f"session '{session_id}' holds {len(history)} messages; this turn would pass the "
                               f"limit of {settings.CONTEXT_SESSION_MAX_MESSAGES}: trim it (POST "
                               f"/api/sessions/{session_id}/trim) or start another", param="session_id",
                          code="session_full")
    return {**body, "messages": history + body["messages"]}, SessionTurn(principal, session_id, messages)
