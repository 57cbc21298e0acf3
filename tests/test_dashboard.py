"""The browser dashboard: login, and each page shows only what the user's organization may see."""

from __future__ import annotations

import pytest
from django.test import Client

from inference.models import Engine
from registry.models import Block
from tests.factories import BlockFactory


@pytest.fixture
def browser(owner) -> Client:
    client = Client()
    client.force_login(owner.user)
    return client


@pytest.fixture
def catalog(owner, outsider):
    return {
        "mine": BlockFactory(block_id="acme-private", organization=owner.organization, description="ours"),
        "public": BlockFactory(block_id="globex-public", organization=outsider.organization,
                               visibility=Block.PUBLIC, description="shared with all"),
        "secret": BlockFactory(block_id="globex-secret", organization=outsider.organization,
                               description="not for acme"),
    }


def test_it_sends_anonymous_visitors_to_the_login_page(db):
    response = Client().get("/")
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


def test_the_login_page_logs_a_user_in(owner):
    client = Client()
    assert client.get("/login/").status_code == 200
    response = client.post("/login/", {"username": "alice", "password": "pw-alice"})
    assert response.status_code == 302
    assert client.get("/").status_code == 200


def test_the_login_page_rejects_a_wrong_password(owner):
    response = Client().post("/login/", {"username": "alice", "password": "wrong"})
    assert response.status_code == 200
    assert b"correct username and password" in response.content


def test_it_lists_own_and_public_blocks_but_not_another_orgs_private_block(browser, catalog):
    page = browser.get("/").content.decode()
    assert "acme-private" in page and "globex-public" in page
    assert "globex-secret" not in page


def test_an_htmx_search_returns_only_the_table_partial(browser, catalog):
    response = browser.get("/", {"q": "ours"}, HTTP_HX_REQUEST="true")
    body = response.content.decode()
    assert "<html" not in body and "<table" in body
    assert "acme-private" in body and "globex-public" not in body


def test_the_engines_page_hides_another_orgs_engines(browser, catalog):
    Engine.objects.create(block=catalog["mine"], node="gpu-a", endpoint="http://10.0.0.1:30000", state=Engine.READY)
    Engine.objects.create(block=catalog["secret"], node="gpu-b", endpoint="http://10.0.0.2:30000")
    body = browser.get("/engines/", HTTP_HX_REQUEST="true").content.decode()
    assert "gpu-a" in body and "gpu-b" not in body


def test_another_orgs_public_block_is_usable_but_its_engines_and_internal_endpoints_stay_hidden(browser, catalog):
    Engine.objects.create(block=catalog["public"], node="globex-node", endpoint="http://10.9.9.9:30000",
                          state=Engine.READY)
    listed = browser.get("/engines/").content.decode()
    assert "globex-node" not in listed and "10.9.9.9" not in listed
    page = browser.get(f"/blocks/{catalog['public'].pk}/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "globex-public" in html and "globex-node" not in html and "10.9.9.9" not in html


def test_the_chat_page_offers_only_models_the_org_may_run(browser, catalog):
    body = browser.get("/chat/").content.decode()
    assert ">acme-private</option>" in body
    # As the chat socket resolves it: another organization's block by its qualified id.
    assert ">globex/globex-public</option>" in body
    assert "globex-secret" not in body


def test_a_user_without_organization_sees_a_clear_notice(db):
    from django.contrib.auth import get_user_model

    client = Client()
    client.force_login(get_user_model().objects.create_user(username="loner"))
    body = client.get("/").content.decode()
    assert "belongs to no organization" in body
