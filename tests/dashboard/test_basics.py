"""Every page's basics: a title of its own, the stylesheet and favicon served, htmx and an expired
session, stale engines shown as stale."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from inference.models import Engine
from tests.factories import BlockFactory

PAGES = ["/", "/blocks/search/", "/blocks/new/", "/engines/", "/chat/", "/org/", "/org/keys/", "/org/quotas/",
         "/org/policies/", "/org/grants/"]


def _title(html: str) -> str:
    return re.search(r"<title>(.*?)</title>", html, re.S).group(1).strip()


def test_every_page_has_a_title_of_its_own(owner_browser):
    titles = {}
    for path in PAGES:
        response = owner_browser.get(path)
        assert response.status_code == 200, path
        titles[path] = _title(response.content.decode())
    assert len(set(titles.values())) == len(PAGES), titles
    assert all(title.endswith("· Switchboard") for title in titles.values())


def test_the_login_page_has_a_title_and_labelled_fields(db):
    html = Client().get("/login/").content.decode()
    assert _title(html) == "Log in · Switchboard"
    assert '<label for="id_username">' in html and '<label for="id_password">' in html


@pytest.mark.parametrize("path", ["/static/switchboard.css", "/static/favicon.svg", "/static/chat.js",
                                  "/static/markdown.js", "/static/htmx.min.js"])
def test_static_files_are_served_with_debug_off(db, path, settings):
    settings.DEBUG = False
    response = Client().get(path)
    assert response.status_code == 200
    assert b"".join(response.streaming_content if response.streaming else [response.content])


def test_every_page_links_the_favicon_and_the_stylesheet(owner_browser):
    html = owner_browser.get("/").content.decode()
    assert 'rel="icon"' in html and "favicon.svg" in html and "switchboard.css" in html


def test_an_htmx_request_from_an_expired_session_is_told_to_redirect_to_login(db):
    response = Client().get("/engines/", HTTP_HX_REQUEST="true",
                            HTTP_HX_CURRENT_URL="http://testserver/engines/?x=1")
    assert response.status_code == 200
    assert response.content == b""
    assert response["HX-Redirect"] == "/login/?next=%2Fengines%2F%3Fx%3D1"


def test_a_plain_request_from_an_expired_session_still_gets_a_redirect(db):
    response = Client().get("/engines/")
    assert response.status_code == 302 and "HX-Redirect" not in response


def test_an_htmx_redirect_ignores_a_current_url_on_another_host(db):
    response = Client().get("/engines/", HTTP_HX_REQUEST="true", HTTP_HX_CURRENT_URL="https://evil.example/x")
    assert response["HX-Redirect"] == "/login/?next=%2Fengines%2F"


def test_an_engine_with_an_old_heartbeat_shows_as_stale_not_ready(owner, owner_browser):
    block = BlockFactory(organization=owner.organization)
    now = timezone.now()
    Engine.objects.create(block=block, node="fresh", endpoint="http://10.0.0.1:1", state=Engine.READY,
                          last_heartbeat=now)
    Engine.objects.create(block=block, node="old", endpoint="http://10.0.0.2:1", state=Engine.READY,
                          last_heartbeat=now - timedelta(minutes=10))
    html = owner_browser.get("/engines/", HTTP_HX_REQUEST="true").content.decode()
    rows = {node: row for node, row in re.findall(r'<tr class="state-\w+">.*?<td data-label="Node">(\w+)</td>(.*?)</tr>',
                                                 html, re.S)}
    assert 'class="badge ready"' in rows["fresh"]
    assert 'class="badge stale"' in rows["old"]


def test_the_nav_marks_the_current_page(owner_browser):
    html = owner_browser.get("/org/keys/").content.decode()
    assert re.search(r'href="/org/"[^>]*aria-current="page"', html)


def test_no_page_repeats_an_element_id(owner, owner_browser):
    BlockFactory(organization=owner.organization)  # the chat page then shows its form
    for path in PAGES:
        ids = re.findall(r'\sid="([^"]+)"', owner_browser.get(path).content.decode())
        repeated = {i for i in ids if ids.count(i) > 1}
        assert not repeated, f"{path}: {repeated}"
