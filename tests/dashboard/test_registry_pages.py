"""The registry pages: browse with totals and pages, text search over names and tags, the query
language, search by meaning, a block's page, and the create/edit forms (owners only, secrets masked)."""

from __future__ import annotations

import json

import pytest

from registry.models import Block
from tests.factories import BlockFactory


@pytest.fixture
def catalog(owner, outsider):
    return {
        "mine": BlockFactory(block_id="acme-private", organization=owner.organization, description="ours",
                             tags=["code"], name="Acme Coder"),
        "public": BlockFactory(block_id="globex-public", organization=outsider.organization,
                               visibility=Block.PUBLIC, description="shared with all", tags=["chat"]),
        "secret": BlockFactory(block_id="globex-secret", organization=outsider.organization,
                               description="not for acme"),
    }


def test_the_list_shows_own_and_public_blocks_with_totals_but_not_another_orgs_private_block(owner_browser, catalog):
    html = owner_browser.get("/").content.decode()
    assert "acme-private" in html and "globex-public" in html and "globex-secret" not in html
    assert "2 of 2 visible blocks" in html


def test_the_list_pages_past_fifty_rows_and_says_so(owner, owner_browser):
    BlockFactory.create_batch(55, organization=owner.organization)
    first = owner_browser.get("/").content.decode()
    assert "55 of 55 visible blocks · page 1 of 2" in first and 'rel="next"' in first
    second = owner_browser.get("/", {"page": 2}).content.decode()
    assert second.count('data-label="ID"') == 5


def test_text_search_matches_names_and_tags(owner_browser, catalog):
    by_name = owner_browser.get("/", {"q": "Coder"}, HTTP_HX_REQUEST="true").content.decode()
    assert "acme-private" in by_name and "globex-public" not in by_name
    by_tag = owner_browser.get("/", {"q": "chat"}, HTTP_HX_REQUEST="true").content.decode()
    assert "globex-public" in by_tag and "acme-private" not in by_tag


def test_an_htmx_search_returns_only_the_table_partial(owner_browser, catalog):
    body = owner_browser.get("/", {"q": "ours"}, HTTP_HX_REQUEST="true").content.decode()
    assert "<html" not in body and "acme-private" in body


def test_the_filter_row_uses_the_query_language(owner_browser, catalog):
    html = owner_browser.get("/", {"var": "tags", "op": "IN", "val": "chat, other"}).content.decode()
    assert "globex-public" in html and "acme-private" not in html
    assert "1 of 2 visible blocks" in html


def test_a_json_query_filters_and_a_bad_one_is_shown_not_a_500(owner_browser, catalog):
    query = {"conditions": [{"variable": "id", "operator": "LIKE", "value": "acme*"}]}
    html = owner_browser.get("/", {"filter": json.dumps(query)}).content.decode()
    assert "acme-private" in html and "globex-public" not in html
    bad = owner_browser.get("/", {"filter": "{not json"})
    assert bad.status_code == 200 and "filter: not valid JSON" in bad.content.decode()
    wrong = owner_browser.get("/", {"var": "enabled", "op": "LIKE", "val": "x"}).content.decode()
    assert "operator LIKE is not supported" in wrong


def test_search_by_meaning_ranks_blocks_and_hides_another_orgs_private_block(owner_browser, catalog):
    html = owner_browser.get("/blocks/search/", {"task": "shared with all", "policy": "text-overlap"}).content.decode()
    assert "globex-public" in html and "globex-secret" not in html


def test_a_block_page_shows_metadata_engines_and_metrics(owner_browser, catalog):
    html = owner_browser.get(f"/blocks/{catalog['mine'].pk}/").content.decode()
    assert "Acme Coder" in html and "Metrics" in html and "Engines" in html and "<td data-label=\"Window\">1h</td>" in html


def test_an_outsider_gets_404_for_a_private_block_page_and_its_edit_form(outsider_browser, catalog):
    assert outsider_browser.get(f"/blocks/{catalog['mine'].pk}/").status_code == 404
    assert outsider_browser.get(f"/blocks/{catalog['mine'].pk}/edit/").status_code == 404
    assert outsider_browser.post(f"/blocks/{catalog['mine'].pk}/delete/").status_code == 404


def test_a_public_block_of_another_org_has_a_page_but_no_edit_form(owner_browser, catalog):
    assert owner_browser.get(f"/blocks/{catalog['public'].pk}/").status_code == 200
    assert owner_browser.get(f"/blocks/{catalog['public'].pk}/edit/").status_code == 404


def test_a_member_gets_403_on_create_edit_and_delete(member_browser, catalog):
    assert member_browser.get("/blocks/new/").status_code == 403
    assert member_browser.get(f"/blocks/{catalog['mine'].pk}/edit/").status_code == 403
    assert member_browser.post(f"/blocks/{catalog['mine'].pk}/delete/").status_code == 403
    assert Block.objects.filter(pk=catalog["mine"].pk).exists()


NEW_BLOCK = {"block_id": "gpt-proxy", "name": "GPT proxy", "kind": "llm", "description": "General chat",
             "tags": "chat, general", "input_protocols": "text/plain", "output_protocols": "text/plain",
             "visibility": "private", "enabled": "on", "backend_type": "openai",
             "base_url": "https://api.openai.com/v1", "api_key": "sk-secret-123", "model": "gpt-4o-mini"}


def test_an_owner_creates_an_openai_block_from_plain_fields(owner, owner_browser):
    response = owner_browser.post("/blocks/new/", NEW_BLOCK)
    assert response.status_code == 302
    block = Block.objects.get(organization=owner.organization, block_id="gpt-proxy")
    assert block.backend_config == {"base_url": "https://api.openai.com/v1", "api_key": "sk-secret-123",
                                    "model": "gpt-4o-mini"}
    assert block.tags == ["chat", "general"]
    page = owner_browser.get(response["Location"]).content.decode()
    assert "sk-secret-123" not in page and "***" in page


def test_the_edit_form_never_shows_the_secret_and_a_blank_key_keeps_it(owner, owner_browser):
    owner_browser.post("/blocks/new/", NEW_BLOCK)
    block = Block.objects.get(organization=owner.organization, block_id="gpt-proxy")
    form = owner_browser.get(f"/blocks/{block.pk}/edit/").content.decode()
    assert "sk-secret-123" not in form and "A key is stored" in form
    response = owner_browser.post(f"/blocks/{block.pk}/edit/", {**NEW_BLOCK, "api_key": "", "description": "New"})
    assert response.status_code == 302
    block.refresh_from_db()
    assert block.backend_config["api_key"] == "sk-secret-123" and block.description == "New"


def test_moving_the_destination_without_sending_the_key_again_is_refused(owner, owner_browser):
    owner_browser.post("/blocks/new/", NEW_BLOCK)
    block = Block.objects.get(organization=owner.organization, block_id="gpt-proxy")
    response = owner_browser.post(f"/blocks/{block.pk}/edit/",
                                  {**NEW_BLOCK, "api_key": "", "base_url": "https://elsewhere.example/v1"})
    assert response.status_code == 400
    assert "Enter the API key again" in response.content.decode()
    block.refresh_from_db()
    assert block.backend_config["base_url"] == "https://api.openai.com/v1"


@pytest.mark.parametrize(("change", "message"), [
    ({"block_id": "bad id!"}, "letters, digits"),
    ({"block_id": "auto"}, "reserved"),
    ({"base_url": ""}, "Required for this backend."),
    ({"base_url": "http://169.254.169.254/v1"}, "is not a public address"),
    ({"backend_type": "other", "config_json": '{"type": "python", "config": {"class": "os.system"}}'}, "operator"),
    ({"backend_type": "other", "config_json": "{nope"}, "not valid JSON"),
])
def test_bad_block_input_is_shown_on_the_form_and_nothing_is_stored(owner, owner_browser, change, message):
    response = owner_browser.post("/blocks/new/", {**NEW_BLOCK, **change})
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not Block.objects.filter(organization=owner.organization).exists()


def test_a_duplicate_id_is_a_form_error(owner, owner_browser):
    owner_browser.post("/blocks/new/", NEW_BLOCK)
    response = owner_browser.post("/blocks/new/", NEW_BLOCK)
    assert response.status_code == 400 and "already have a block" in response.content.decode()


def test_an_owner_deletes_a_block(owner, owner_browser, catalog):
    response = owner_browser.post(f"/blocks/{catalog['mine'].pk}/delete/")
    assert response.status_code == 302
    assert not Block.objects.filter(pk=catalog["mine"].pk).exists()
