"""When PostgreSQL or Redis is unreachable: which errors say so, and the 503 every transport answers.

An outage is the server's trouble, not the caller's: it is a 503 with Retry-After and a code
naming the dependency (`database_unavailable`, `redis_unavailable`), never a 500 or an HTML page.
The gateway (/v1, the WebSocket chat) renders it in OpenAI's shape, the REST API in the
`{"success": false, "message": ...}` envelope (envelope_response, called by registry.envelope's
DRF handler), and every other Django view through OutageMiddleware.

What keeps working during a PostgreSQL outage is decided by the caches (registry/ttlcache.py,
registry/tenancy/rules.py): warm entries are served for settings.DB_OUTAGE_GRACE_S past their
normal lifetime. A Redis outage is not papered over: quotas and rate limits cannot be enforced
without it, so admission fails closed.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, JsonResponse
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rest_framework.response import Response

log = logging.getLogger(__name__)



class DatabaseTimeout(OperationalError):
    """A lookup the database did not answer in time (settings.DB_LOOKUP_TIMEOUT_S): a frozen server or a
    network partition, where a query on an open connection would otherwise wait for minutes."""


# OperationalError: the connection could not be made or was lost; InterfaceError: Django holds a
# connection that is already closed. Both clear up by themselves once the database is back.
DATABASE_ERRORS: tuple[type[Exception], ...] = (OperationalError, InterfaceError)
REDIS_ERRORS: tuple[type[Exception], ...] = (RedisConnectionError, RedisTimeoutError)

# Long enough not to hammer a recovering service, short enough that clients come back soon after.
RETRY_AFTER_S = 5
# One log line per dependency and interval, not one traceback per request of an outage.
_LOG_EVERY_S = 10.0
_last_logged: dict[str, float] = {}


@dataclass(frozen=True)
class Outage:
    code: str
    message: str
    retry_after: int = RETRY_AFTER_S

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


DATABASE_OUTAGE = Outage("database_unavailable", "The database is unavailable; retry shortly.")
REDIS_OUTAGE = Outage("redis_unavailable",
                      "Redis (quotas, rate limits and queues) is unavailable; retry shortly.")


def outage_of(exc: BaseException) -> Outage | None:
    """The outage `exc` reports, if it is one (logged, rate-limited); None for any other error."""
    if isinstance(exc, DATABASE_ERRORS):
        outage = DATABASE_OUTAGE
    elif isinstance(exc, REDIS_ERRORS):
        outage = REDIS_OUTAGE
    else:
        return None
    now = time.monotonic()
    if now - _last_logged.get(outage.code, -_LOG_EVERY_S) >= _LOG_EVERY_S:
        _last_logged[outage.code] = now
        log.warning("answering 503 %s: %s: %s", outage.code, type(exc).__name__, exc)
    return outage


def envelope_response(exc: BaseException) -> Response | None:
    """For the DRF exception handler: the registry API's envelope for an outage, else None."""
    outage = outage_of(exc)
    if outage is None:
        return None
    return Response({"success": False, "message": outage.message, "code": outage.code}, status=503,
                    headers=outage.headers)


class OutageMiddleware:
    """Plain Django views (health check, dashboard, admin): an outage is a 503 JSON envelope."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest):
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> JsonResponse | None:
        outage = outage_of(exception)
        if outage is None:
            return None
        response = JsonResponse({"success": False, "message": outage.message, "code": outage.code}, status=503)
        response["Retry-After"] = str(outage.retry_after)
        return response
