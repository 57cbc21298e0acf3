"""The registry API's reply shape: {"success": true, "data": ...} or {"success": false, "message": ...}."""

from __future__ import annotations

from typing import Any

from rest_framework import status as http
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from registry.outages import envelope_response as outage_response


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


def exception_handler(exc: Exception, context: dict) -> Response | None:
    if (unavailable := outage_response(exc)) is not None:  # PostgreSQL or Redis down: 503, not a 500
        return unavailable
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    detail = response.data
    message = "; ".join(_flatten(detail)) if not isinstance(detail, str) else detail
    envelope = {"success": False, "message": message}
    if isinstance(detail, dict) and "detail" not in detail:
        envelope["errors"] = detail
    response.data = envelope
    return response
