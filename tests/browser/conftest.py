"""Browser tests: Playwright drives Debian's Chromium (/usr/bin/chromium; `playwright install` would
download a browser, which cannot happen here) against the session's live gateway (uvicorn, as
production runs it, on the test database). Every page a test opens fails the test on a JavaScript
console error or an uncaught exception; screenshots go to var/test/screenshots (not committed)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from tests.support.live_server import LiveGateway

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "test" / "screenshots"
TIMEOUT_MS = 30_000


@pytest.fixture
def browser(monkeypatch) -> Iterator[Browser]:
    """Chromium for one test. Function-scoped on purpose: Playwright's sync API keeps its event loop
    marked as running on this thread while it is started, and the suite's async fixtures need the
    thread's loop free before and after each test."""
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: `make test` installs it (.ci/chromium.sh)"
    # For the same reason Django takes the test's plain ORM calls for calls from async code. They are
    # not: nothing else runs on this thread while they do (Playwright's documentation gives this for Django).
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        yield launched
        launched.close()


@pytest.fixture
def site(live_gateway: LiveGateway) -> str:
    # "localhost", not 127.0.0.1: with DEBUG off the session cookie is Secure, which Chromium keeps
    # over plain HTTP for localhost only.
    return live_gateway.url.replace("127.0.0.1", "localhost")


class ConsoleErrors(list):
    """The console errors and uncaught exceptions of every page in one test."""


@pytest.fixture
def console_errors() -> ConsoleErrors:
    return ConsoleErrors()


def _context(browser: Browser, console_errors: ConsoleErrors, **options) -> BrowserContext:
    context = browser.new_context(**options)
    context.set_default_timeout(TIMEOUT_MS)

    def watch(page: Page) -> None:
        page.on("console", lambda message: console_errors.append(f"console: {message.text} ({page.url})")
                if message.type == "error" else None)
        page.on("pageerror", lambda error: console_errors.append(f"exception: {error} ({page.url})"))

    context.on("page", watch)
    return context


@pytest.fixture
def page(browser: Browser, console_errors: ConsoleErrors) -> Iterator[Page]:
    context = _context(browser, console_errors, viewport={"width": 1280, "height": 900})
    yield context.new_page()
    context.close()
    assert list(console_errors) == [], "JavaScript errors on the page"


@pytest.fixture
def phone(browser: Browser, console_errors: ConsoleErrors) -> Iterator[Page]:
    """A 390 px wide screen (a phone held upright)."""
    context = _context(browser, console_errors, viewport={"width": 390, "height": 844}, is_mobile=True,
                       has_touch=True, device_scale_factor=2)
    yield context.new_page()
    context.close()
    assert list(console_errors) == [], "JavaScript errors on the page"


@pytest.fixture
def screenshot(request):
    """screenshot(page, name): saves var/test/screenshots/<test>-<name>.png, the run's artifact."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    test = re.sub(r"[^A-Za-z0-9_-]+", "-", request.node.name)

    def take(page: Page, name: str) -> Path:
        path = SCREENSHOTS / f"{test}-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take


@pytest.fixture
def owner_login(owner) -> tuple[str, str]:
    """The owner's (username, password), hashed so that the live gateway can check it: the suite's
    fast MD5 hasher (tests/conftest.py) is this process's setting only. PBKDF2 with few iterations keeps
    it quick; the gateway reads the iterations from the hash."""
    password = "pw-browser"
    owner.user.password = PBKDF2PasswordHasher().encode(password, PBKDF2PasswordHasher().salt(), iterations=1000)
    owner.user.save(update_fields=["password"])
    return owner.user.get_username(), password


def log_in(page: Page, site: str, username: str, password: str) -> None:
    page.goto(f"{site}/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{site}/")
