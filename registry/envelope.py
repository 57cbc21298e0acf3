"""The registry API's reply shape: {"success": true, "data": ...} or {"success": false, "message": ...}."""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.db import DataError
from rest_framework import status as http
from rest_framework.exceptions import APIException, NotFound
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from registry.outages import envelope_response as outage_response

log = logging.getLogger(__name__)


class Unprocessable(APIException):
    """422: well-formed input (it matches /api/schema/) refused by a rule the schema cannot state,
    such as an expiry that has already passed. Malformed input stays a 400."""

    status_code = http.HTTP_422_UNPROCESSABLE_ENTITY
    default_code = "unprocessable"


class ReferenceNotFound(NotFound):
    """404: a body names a block, key or organization that does not exist or that the caller may not
    see (the two are not told apart). Raised after the body's form is checked, so a malformed body
    is still a 400."""


def ok(data: Any, status: int = http.HTTP_200_OK) -> Response:
    return Response({"success": True, "data": data}, status=status)


def fail(message: str, status: int = http.HTTP_400_BAD_REQUEST, **extra: Any) -> Response:
    return Response({"success": False, "message": message, **extra}, status=status)


def _flatten(detail: Any, prefix: str = "") -> list[str]:
    if isinstance(detail, dict):
        out: list[str] = []
        for key, value in detail.items():
            name = key if key not in ("non_field_errors", "detail") else ""
            out.extend(_flatten(value, f"{prefix}{name}: " if name else prefix))
        return out
    if isinstance(detail, list):
        return [m for item in detail for m in _flatten(item, prefix)]
    return [f"{prefix}{detail}"]


def _not_drf(exc: Exception) -> Response | None:
    """Exceptions DRF leaves to Django, which would answer them in HTML (or as a 500)."""
    if isinstance(exc, RequestDataTooBig):
        return fail("the request body is too large", status=http.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
    if isinstance(exc, SuspiciousOperation):
        return fail(f"bad request: {exc}")
    if isinstance(exc, DataError):
        # The input checks (registry.parsers, webapp.middleware) refuse what PostgreSQL cannot take;
        # this is the net under them, so a value they missed is still the caller's 400, not our 500.
        log.warning("database refused a value from the request: %s", exc)
        return fail("a value in the request cannot be stored or searched (e.g. a NUL character or a number "
                    "out of range)")
    return None


def exception_handler(exc: Exception, context: dict) -> Response | None:
    if (unavailable := outage_response(exc)) is not None:  # PostgreSQL or Redis down: 503, not a 500
        return unavailable
    response = drf_exception_handler(exc, context)
    if response is None:
        return _not_drf(exc)
    detail = response.data
    message = "; ".join(_flatten(detail)) if not isinstance(detail, str) else detail
    envelope = {"success": False, "message": message}
    if isinstance(detail, dict) and "detail" not in detail:
        envelope["errors"] = detail
    response.data = envelope
    return response
