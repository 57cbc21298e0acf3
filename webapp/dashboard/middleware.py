"""htmx and an expired session: htmx follows a redirect to the login page inside its request and
would swap the whole login page into the fragment it was refreshing (a table polled every 2 s).
A redirect to the login page answering an htmx request becomes `HX-Redirect`, which makes htmx
load the login page as a page, with `next` pointing at the page the user was on."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlencode, urlsplit

from django.conf import settings
from django.contrib.auth import REDIRECT_FIELD_NAME
from django.http import HttpRequest, HttpResponse
from django.utils.http import url_has_allowed_host_and_scheme


def _is_login_redirect(response: HttpResponse) -> bool:
    if response.status_code not in (301, 302, 303, 307, 308):
        return False
    return urlsplit(response.get("Location", "")).path == str(settings.LOGIN_URL)


def _page_path(request: HttpRequest) -> str:
    """Where the user was: the page htmx runs in (HX-Current-URL), when it is ours, else the request."""
    current = request.headers.get("HX-Current-URL", "")
    if current and url_has_allowed_host_and_scheme(current, allowed_hosts={request.get_host()}):
        parts = urlsplit(current)
        return parts.path + (f"?{parts.query}" if parts.query else "")
    return request.get_full_path()


class HtmxLoginRedirectMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if request.headers.get("HX-Request") and _is_login_redirect(response):
            redirected = HttpResponse(status=200)
            redirected["HX-Redirect"] = f"{settings.LOGIN_URL}?{urlencode({REDIRECT_FIELD_NAME: _page_path(request)})}"
            return redirected
        return response
