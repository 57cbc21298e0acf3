"""The one failure every operator, component and transport of the runtime raises and renders."""

from __future__ import annotations

from typing import Any


class VMFailure(Exception):
    """A refused or failed runtime request: `status` is the HTTP status the HTTP endpoint answers (and a
    packet's body carries), `code` a stable machine-readable reason, `param` the input field at fault."""

    def __init__(self, status: int, message: str, *, code: str, param: str | None = None, rule: bool = False):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        # A 400 for well-formed input that breaks a rule no JSON Schema states (an overlap larger than the
        # size, an expression that does not parse): POST /v1/runtime answers it 422, as /api does.
        self.rule = rule

    def body(self) -> dict[str, Any]:
        return {"message": self.message, "code": self.code, "param": self.param, "http_status": self.status}


def bad_input(message: str, param: str | None = None, code: str = "invalid_value", *,
              rule: bool = False) -> VMFailure:
    return VMFailure(400, message, code=code, param=param, rule=rule)


def not_found(message: str, param: str | None = None, code: str = "not_found") -> VMFailure:
    return VMFailure(404, message, code=code, param=param)
