"""Password guessing on the dashboard and admin logins: failures are counted per username and per
client address in Django's cache (Redis in production, in-process in the embedded default); past
the limit, that username (from any address) or that address (for any username) is refused with a
429 for LOGIN_LOCKOUT_S, even with the right password. A successful login clears both counts.

Counting listens to Django's own login signals, so it sees exactly the attempts that reached a
password check; refusing happens in `throttled_login`, which wraps every password login view
(webapp/urls.py, webapp/dashboard/urls.py). The address is REMOTE_ADDR: behind a reverse proxy,
run uvicorn with --proxy-headers and --forwarded-allow-ips so that it is the client's.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Callable
from functools import wraps

from django.conf import settings
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.core.cache import cache
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

log = logging.getLogger(__name__)

_PREFIX = "login-throttle"


def _subjects(username: str | None, address: str | None) -> list[tuple[str, int]]:
    """(cache key stem, failure limit) for each thing that is counted."""
    subjects = []
    if username:
        # Hashed: a cache key must not carry arbitrary user input (length, spaces, control characters).
        digest = hashlib.sha256(username.strip().casefold().encode()).hexdigest()
        subjects.append((f"{_PREFIX}:user:{digest}", settings.LOGIN_FAILURE_LIMIT))
    if address:
        subjects.append((f"{_PREFIX}:addr:{address}", settings.LOGIN_FAILURE_LIMIT_PER_ADDRESS))
    return subjects


def lockout_remaining(*, username: str | None, address: str | None) -> int:
    """Seconds before this username and address may try again; 0 when neither is locked out."""
    locks = cache.get_many([f"{stem}:locked-until" for stem, _ in _subjects(username, address)])
    until = max(locks.values(), default=0.0)
    return max(0, math.ceil(until - time.time()))


def login_failure_record(*, username: str | None, address: str | None) -> None:
    for stem, limit in _subjects(username, address):
        failures = f"{stem}:failures"
        # The window starts at the first failure; add() leaves a running count alone.
        cache.add(failures, 0, timeout=settings.LOGIN_FAILURE_WINDOW_S)
        try:
            count = cache.incr(failures)
        except ValueError:  # the window ran out between add() and incr()
            cache.set(failures, 1, timeout=settings.LOGIN_FAILURE_WINDOW_S)
            count = 1
        if count >= limit:
            cache.set(f"{stem}:locked-until", time.time() + settings.LOGIN_LOCKOUT_S,
                      timeout=settings.LOGIN_LOCKOUT_S)
            cache.delete(failures)


def login_failures_clear(*, username: str | None, address: str | None) -> None:
    cache.delete_many([f"{stem}:failures" for stem, _ in _subjects(username, address)])


def _address(request: HttpRequest | None) -> str | None:
    return request.META.get("REMOTE_ADDR") if request is not None else None


@receiver(user_login_failed, dispatch_uid="login-throttle-failed")
def _on_login_failed(sender, credentials: dict, request: HttpRequest | None = None, **kwargs) -> None:
    if request is None:  # not a web login (a shell, a test client's login()): nothing to throttle
        return
    username = credentials.get("username")
    try:
        login_failure_record(username=username if isinstance(username, str) else None, address=_address(request))
    except Exception:
        log.warning("could not count a failed login", exc_info=True)


@receiver(user_logged_in, dispatch_uid="login-throttle-succeeded")
def _on_logged_in(sender, request: HttpRequest | None, user, **kwargs) -> None:
    if request is None:
        return
    try:
        login_failures_clear(username=user.get_username(), address=_address(request))
    except Exception:
        log.warning("could not clear the failed-login counts", exc_info=True)


def throttled_login(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """A login view that refuses a POST from a locked-out username or address before any password check."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if request.method == "POST":
            try:
                remaining = lockout_remaining(username=request.POST.get("username"), address=_address(request))
            except Exception:
                # Without the counts there is no limit to enforce: refuse rather than allow unlimited guesses.
                log.warning("login throttle unavailable", exc_info=True)
                response = render(request, "registration/login_refused.html",
                                  {"message": "Logging in is unavailable for a moment. Try again shortly."},
                                  status=503)
                response["Retry-After"] = "5"
                return response
            if remaining:
                minutes = math.ceil(remaining / 60)
                message = (f"Too many failed logins for this user or from this address. "
                           f"Try again in {minutes} minute{'s' if minutes != 1 else ''}.")
                response = render(request, "registration/login_refused.html", {"message": message}, status=429)
                response["Retry-After"] = str(remaining)
                return response
        return view(request, *args, **kwargs)

    return wrapped
