"""The REST API's only parser: JSON through registry.jsonsafe, with a size cap read as it streams.

Django checks DATA_UPLOAD_MAX_MEMORY_SIZE only when something touches request.body, and then
raises RequestDataTooBig, which DRF does not know and Django renders as an HTML 400. Reading at
most one byte past the cap here refuses an oversized body (chunked ones too) with our own 413.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework import status
from rest_framework.exceptions import APIException, ParseError
from rest_framework.parsers import BaseParser

from registry import jsonsafe


class PayloadTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "payload_too_large"

    def __init__(self) -> None:
        super().__init__(body_too_large_message())


def body_too_large_message() -> str:
    return f"the request body is larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes"


class JSONParser(BaseParser):
    media_type = "application/json"

    def parse(self, stream, media_type: str | None = None, parser_context: dict | None = None) -> Any:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        raw = stream.read(limit + 1) if limit is not None else stream.read()
        if limit is not None and len(raw) > limit:
            raise PayloadTooLarge()
        if not raw:
            return {}
        try:
            # NUL is refused in every string: whatever the API accepts may end up in PostgreSQL.
            return jsonsafe.loads(raw, refuse_nul=True)
        except jsonsafe.UnsafeJSON as exc:
            raise ParseError(exc.message) from None
