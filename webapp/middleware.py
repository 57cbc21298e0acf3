"""Refuses, before any view runs, the parts of an API request that no view should see.

A NUL character in the path or a query value reaches PostgreSQL as a DataError (a 500) in
whichever view forgets to check it, so it is refused here once for /api and /discovery. A
declared body larger than DATA_UPLOAD_MAX_MEMORY_SIZE is refused without reading it.
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse

API_PREFIXES = ("/api/", "/discovery/")


def is_api_path(path: str) -> bool:
    return path.startswith(API_PREFIXES)


def api_error(message: str, status: int) -> JsonResponse:
    return JsonResponse({"success": False, "message": message}, status=status)


def refusal(request: HttpRequest) -> JsonResponse | None:
    if "\x00" in request.path_info:
        return api_error("path: NUL characters (\\u0000) are not allowed", 400)
    for name, values in request.GET.lists():
        if "\x00" in name or any("\x00" in value for value in values):
            return api_error(f"{name.replace(chr(0), '')}: NUL characters (\\u0000) are not allowed", 400)
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return api_error("Content-Length: must be an integer", 400)
    if limit is not None and length > limit:
        return api_error(f"the request body is larger than {limit} bytes", 413)
    if not length and request.META.get("HTTP_TRANSFER_ENCODING"):
        # A chunked body has no Content-Length, and DRF reads a body without one as empty. Django
        # has it buffered already: its size is checked against the cap, then declared for DRF.
        try:
            request.META["CONTENT_LENGTH"] = str(len(request.body))
        except RequestDataTooBig:
            return api_error(f"the request body is larger than {limit} bytes", 413)
    return None


class ApiInputMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if is_api_path(request.path_info):
            refused = refusal(request)
            if refused is not None:
                return refused
        return self.get_response(request)


def _declares_length(scope: dict) -> bool:
    return any(name == b"content-length" for name, _ in scope.get("headers", ()))


async def _answer(send, status: int, message: str) -> None:
    body = JsonResponse({"success": False, "message": message}).content
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})


def guard_query_encoding(app):
    """ASGI wrapper for Django, under /api and /discovery only:

    - a query string that is not UTF-8 fails in Django's ASGIRequest, before any middleware, as an
      empty HTML 400: it gets the envelope here;
    - a body sent without Content-Length (chunked) is counted as it arrives and refused with a 413 one
      chunk past DATA_UPLOAD_MAX_MEMORY_SIZE. Django would otherwise spool all of it and then read it
      whole into memory to learn its size (a declared length is refused by ApiInputMiddleware unread).
    """

    async def guarded(scope, receive, send):
        if scope["type"] == "http" and is_api_path(scope.get("path", "")):
            try:
                scope.get("query_string", b"").decode()
            except UnicodeDecodeError:
                await _answer(send, 400, "query: the query string is not valid UTF-8")
                return
            limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
            if limit is not None and not _declares_length(scope):
                messages, size = [], 0
                while True:
                    message = await receive()
                    messages.append(message)
                    if message["type"] != "http.request":
                        break
                    size += len(message.get("body", b""))
                    if size > limit:
                        await _answer(send, 413, f"the request body is larger than {limit} bytes")
                        return
                    if not message.get("more_body"):
                        break
                receive = _replay(messages, receive)
        await app(scope, receive, send)

    return guarded


def _replay(messages: list[dict], receive):
    """`receive` that first hands back what was already read, then goes on to the client."""
    pending = list(messages)

    async def replayed():
        return pending.pop(0) if pending else await receive()

    return replayed
