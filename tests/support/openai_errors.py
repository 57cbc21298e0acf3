"""OpenAI's error shape, as a client reads it off a reply."""

from __future__ import annotations

from tests.support.plain_http import Reply


def assert_openai_error(reply: Reply, status: int, code: str | None = None, param: str | None = None) -> dict:
    """The reply is `status` with exactly OpenAI's four error fields and a message; returns the error."""
    assert reply.status == status, reply.body
    error = reply.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    if code is not None:
        assert error["code"] == code
    if param is not None:
        assert error["param"] == param
    return error
