"""OpenAI's error shape, raised anywhere in the pipeline and rendered once by the transport."""

from __future__ import annotations

import orjson

from registry.outages import outage_of

# OpenAI's `type` for each status; clients (the openai package) branch on status, people read `type`.
_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    502: "upstream_error",
    503: "server_error",
    504: "timeout_error",
    508: "invalid_request_error",  # loop_detected: a block points back at a gateway
}


class OpenAIError(Exception):
    def __init__(self, status: int, message: str, *, code: str | None = None, param: str | None = None,
                 type: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.type = type or _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
        self.headers = headers or {}

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def json(self) -> bytes:
        return orjson.dumps(self.body())


def invalid(message: str, param: str | None = None, code: str | None = None) -> OpenAIError:
    return OpenAIError(400, message, param=param, code=code)


def unavailable(exc: BaseException) -> OpenAIError | None:
    """A 503 naming the dependency when `exc` means PostgreSQL or Redis is down; None otherwise."""
    outage = outage_of(exc)
    if outage is None:
        return None
    return OpenAIError(503, outage.message, code=outage.code, headers=outage.headers)
