"""The dashboard in a real browser: logging in and every page, keys, chat with the built-in model
(stopping an answer), and a 390 px screen. Console errors fail any of them (conftest.py)."""

from __future__ import annotations

import re

import pytest
from django.conf import settings
from django.core.management import call_command
from playwright.sync_api import expect

from inference.models import PlannerConfig
from registry.models import ApiKey
from tests.browser.conftest import log_in

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

PAGES = {"blocks": "/", "search": "/blocks/search/", "new-block": "/blocks/new/", "engines": "/engines/",
         "chat": "/chat/", "members": "/org/", "keys": "/org/keys/", "quotas": "/org/quotas/",
         "policies": "/org/policies/", "grants": "/org/grants/"}


def test_an_owner_logs_in_and_every_page_renders_without_errors(page, site, owner_login, screenshot):
    page.goto(f"{site}/engines/")
    expect(page).to_have_url(re.compile(r"/login/\?next="))
    screenshot(page, "login")
    log_in(page, site, *owner_login)
    for name, path in PAGES.items():
        page.goto(f"{site}{path}")
        expect(page.locator("h1")).to_be_visible()
        assert page.title().endswith("· Switchboard")
        screenshot(page, name)


def test_an_owner_creates_a_key_sees_it_once_and_revokes_it(page, site, owner_login, screenshot):
    log_in(page, site, *owner_login)
    page.goto(f"{site}/org/keys/")
    page.get_by_label("Name").fill("browser-key")
    page.get_by_role("button", name="Create key").click()
    raw = page.locator("#raw-key").inner_text().strip()
    assert raw.startswith("sb-")
    screenshot(page, "created")
    key = ApiKey.objects.get(name="browser-key")
    page.goto(f"{site}/org/keys/")
    assert raw not in page.content()
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Revoke key browser-key").click()
    expect(page.locator(f"#key-{key.pk}")).to_contain_text("revoked")
    key.refresh_from_db()
    assert key.revoked_at is not None
    screenshot(page, "revoked")


def test_chat_with_the_builtin_model_then_stop_an_answer(page, site, owner_login, screenshot):
    call_command("load_builtin_blocks")
    log_in(page, site, *owner_login)
    page.goto(f"{site}/chat/")
    page.get_by_label("Model").select_option(settings.SWITCHBOARD_BUILTIN_BLOCK_ID)
    page.get_by_text("System prompt and parameters").click()
    page.get_by_label("Max tokens").fill("12")
    page.get_by_label("Temperature").fill("0")
    page.get_by_label("Message").fill("What is the capital of France?")
    page.get_by_label("Message").press("Enter")
    first = page.locator("#chat-log .turn.assistant").nth(0)
    expect(first.locator(".meta").first).to_contain_text("out tokens", timeout=180_000)
    expect(page.locator("#chat-send")).to_be_enabled()
    assert first.locator(".body").inner_text().strip()

    page.get_by_label("Max tokens").fill("400")
    # A long answer (counting, up to 400 tokens), so that Stop arrives while it streams.
    page.get_by_label("Message").fill("Count from 1 to 300, one number per line.")
    page.get_by_role("button", name="Send").click()
    expect(page.locator("#chat-send")).to_be_disabled()
    second = page.locator("#chat-log .turn.assistant").nth(1)
    expect(second.locator(".body")).not_to_be_empty(timeout=180_000)
    screenshot(page, "streaming")
    page.get_by_role("button", name="Stop").click()
    expect(second).to_have_class(re.compile(r"\bstopped\b"))
    expect(second.locator(".stopped-text")).to_have_text("Stopped")
    assert second.locator(".body").inner_text().strip(), "the partial answer is kept"
    expect(page.locator("#chat-send")).to_be_enabled()
    screenshot(page, "stopped")


def test_pages_fit_a_390_px_screen_with_a_menu_button(phone, site, owner_login, screenshot):
    log_in(phone, site, *owner_login)
    for name in ("blocks", "keys", "engines", "chat"):
        phone.goto(f"{site}{PAGES[name]}")
        width = phone.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"{name} scrolls sideways ({width} px)"
        screenshot(phone, name)
    nav = phone.locator("#site-nav")
    expect(nav).to_be_hidden()
    phone.get_by_role("button", name="Menu").click()
    expect(nav).to_be_visible()
    expect(phone.get_by_role("button", name="Menu")).to_have_attribute("aria-expanded", "true")
    screenshot(phone, "menu-open")


def test_a_failed_answer_is_shown_and_kept_out_of_the_next_request(page, site, owner, owner_login, upstream_block,
                                                                   fake_upstream, screenshot):
    upstream_block(owner.organization, "status400", block_id="broken")
    upstream_block(owner.organization, "ok", block_id="works")
    log_in(page, site, *owner_login)
    page.goto(f"{site}/chat/")
    page.get_by_label("Model").select_option("broken")
    page.get_by_label("Message").fill("first question")
    page.get_by_label("Message").press("Enter")
    failed = page.locator("#chat-log .turn.assistant").nth(0)
    expect(failed.get_by_role("alert")).to_contain_text("Error", timeout=60_000)
    expect(page.locator("#chat-send")).to_be_enabled()

    page.get_by_label("Model").select_option("works")
    page.get_by_label("Message").fill("second question")
    page.get_by_label("Message").press("Enter")
    answer = page.locator("#chat-log .turn.assistant").nth(1)
    expect(answer.locator(".meta").first).to_contain_text("out tokens", timeout=60_000)
    expect(answer.locator(".body")).to_contain_text("tok0")
    # The failed turn stays on the page but never travels again: no "user, user" history.
    assert fake_upstream.stats.last_body["messages"] == [{"role": "user", "content": "second question"}]
    screenshot(page, "after-error")


def test_markdown_from_the_model_is_rendered_without_its_html(page, site, owner, owner_login, upstream_block):
    upstream_block(owner.organization, "ok", block_id="works")
    log_in(page, site, *owner_login)
    page.goto(f"{site}/chat/")
    html = page.evaluate("""SwitchboardMarkdown.render(
        '# Title\\n<img src=x onerror="alert(1)"> **bold** `<b>code</b>`\\n- [ok](https://example.com)\\n'
        + '- [bad](javascript:alert(1))\\n```\\n<script>alert(2)</script>\\n```')""")
    assert "<img" not in html and "<script" not in html and 'href="javascript' not in html
    assert "&lt;img" in html and "&lt;script&gt;" in html
    assert "<strong>bold</strong>" in html and "<code>&lt;b&gt;code&lt;/b&gt;</code>" in html
    assert '<a href="https://example.com" rel="noopener noreferrer nofollow" target="_blank">ok</a>' in html
    assert "<h3>Title</h3>" in html and "<li>" in html


def test_auto_shows_the_route_it_took(page, site, owner, owner_login, upstream_block):
    works = upstream_block(owner.organization, "ok", block_id="works")
    PlannerConfig.objects.create(organization=owner.organization, mode=PlannerConfig.HARDCODED, default_block=works)
    log_in(page, site, *owner_login)
    page.goto(f"{site}/chat/")
    page.get_by_label("Model").select_option("auto")
    page.get_by_label("Message").fill("hello")
    page.get_by_label("Message").press("Enter")
    answer = page.locator("#chat-log .turn.assistant").nth(0)
    expect(answer.locator(".route")).to_contain_text("auto chose works · by hardcoded", timeout=60_000)


def test_a_lost_connection_mid_answer_is_shown_and_the_next_message_reconnects(page, site, owner, owner_login,
                                                                              upstream_block, fake_upstream):
    upstream_block(owner.organization, "delay2000", block_id="slow")
    upstream_block(owner.organization, "ok", block_id="works")
    # Keeps a handle on the page's sockets, so the test can cut one as a server going away would.
    page.add_init_script("""(() => { const Real = window.WebSocket; window.__sockets = [];
        window.WebSocket = function (...args) { const ws = new Real(...args); window.__sockets.push(ws); return ws; };
        window.WebSocket.prototype = Real.prototype; Object.assign(window.WebSocket, Real); })();""")
    log_in(page, site, *owner_login)
    page.goto(f"{site}/chat/")
    page.get_by_label("Model").select_option("slow")
    page.get_by_label("Message").fill("lost question")
    page.get_by_label("Message").press("Enter")
    expect(page.locator("#chat-send")).to_be_disabled()
    page.wait_for_function("window.__sockets.length === 1 && window.__sockets[0].readyState === 1")
    page.evaluate("window.__sockets[0].close()")
    lost = page.locator("#chat-log .turn.assistant").nth(0)
    expect(lost.get_by_role("alert")).to_contain_text("Connection lost")
    expect(page.locator("#chat-send")).to_be_enabled()

    page.get_by_label("Model").select_option("works")
    page.get_by_label("Message").fill("next question")
    page.get_by_label("Message").press("Enter")
    answer = page.locator("#chat-log .turn.assistant").nth(1)
    expect(answer.locator(".meta").first).to_contain_text("out tokens", timeout=60_000)
    assert fake_upstream.stats.last_body["messages"] == [{"role": "user", "content": "next question"}]
