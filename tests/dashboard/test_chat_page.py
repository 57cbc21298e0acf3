"""The chat page: the model picker (with auto), parameters, and an explanation when it is empty."""

from __future__ import annotations

from django.contrib.auth import get_user_model

from registry.models import Block
from tests.dashboard.conftest import logged_in
from tests.factories import BlockFactory


def test_the_picker_offers_auto_and_only_models_the_org_may_run(owner, outsider, owner_browser):
    BlockFactory(block_id="acme-private", organization=owner.organization)
    BlockFactory(block_id="globex-public", organization=outsider.organization, visibility=Block.PUBLIC)
    BlockFactory(block_id="globex-secret", organization=outsider.organization)
    html = owner_browser.get("/chat/").content.decode()
    assert '<option value="auto">' in html
    assert ">acme-private</option>" in html and ">globex/globex-public</option>" in html
    assert "globex-secret" not in html
    for control in ('id="chat-system"', 'id="chat-temperature"', 'id="chat-max-tokens"', 'id="chat-stop-sequences"'):
        assert control in html


def test_an_empty_picker_says_why_for_an_org_without_blocks(owner_browser):
    html = owner_browser.get("/chat/").content.decode()
    assert 'id="chat-empty"' in html and "no enabled LLM block" in html and 'id="chat-form"' not in html


def test_an_empty_picker_says_why_for_a_user_in_no_organization(db):
    html = logged_in(get_user_model().objects.create_user(username="loner")).get("/chat/").content.decode()
    assert "belongs to no organization" in html and 'id="chat-form"' not in html
