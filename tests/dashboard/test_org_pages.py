"""The organization pages: members and roles, API keys (shown once, revoked, usage against quota),
quotas, policy rules and grants. Members read, owners write (403 otherwise), another
organization's anything is a 404."""

from __future__ import annotations

import re
from collections.abc import Callable
from contextlib import contextmanager

import pytest
from django.contrib.auth import get_user_model
from django.db import connection

from registry.auth import principal_for
from registry.models import ApiKey, Block, BlockGrant, Membership
from registry.tenancy.models import PolicyRule, Quota
from tests.factories import BlockFactory


@contextmanager
def another_owner_writes_first(when: Callable[[str], bool], rival: Callable[[], object]):
    """Another owner's request lands inside this one: `rival()` runs once, just before the first SQL
    statement `when` picks (the database's statements are watched; none of our code is replaced)."""
    ran: list[str] = []

    def wrapper(execute, sql, params, many, context):
        if not ran and when(sql):
            ran.append(sql)
            rival()
        return execute(sql, params, many, context)

    with connection.execute_wrapper(wrapper):
        yield ran


READ_PAGES = ["/org/", "/org/keys/", "/org/quotas/", "/org/policies/", "/org/grants/"]


@pytest.mark.parametrize("path", READ_PAGES)
def test_a_member_reads_every_organization_page_without_owner_controls(member_browser, path):
    html = member_browser.get(path).content.decode()
    assert "only owners change them" in html
    assert "<form method=\"post\" novalidate" not in html


@pytest.mark.parametrize("path", READ_PAGES)
def test_a_member_gets_403_when_posting_to_any_organization_page(member_browser, path):
    assert member_browser.post(path, {}).status_code == 403


@pytest.mark.parametrize("path", READ_PAGES)
def test_a_user_in_no_organization_gets_403(db, path):
    from tests.dashboard.conftest import logged_in

    client = logged_in(get_user_model().objects.create_user(username="loner"))
    assert client.get(path).status_code == 403


# Keys ----------------------------------------------------------------------------------------------

def test_an_owner_creates_a_key_that_is_shown_once_and_works(owner, owner_browser):
    response = owner_browser.post("/org/keys/", {"name": "ci"})
    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    raw = re.search(r'id="raw-key">(sb-[^<]+)<', response.content.decode()).group(1)
    key = ApiKey.objects.get(organization=owner.organization, name="ci")
    assert key.created_by == owner.user
    assert principal_for(f"Bearer {raw}", "10.0.0.1").api_key == key
    assert raw not in owner_browser.get("/org/keys/").content.decode()


def test_a_key_restricted_to_models_lists_only_visible_blocks(owner, outsider, owner_browser):
    BlockFactory(block_id="mine", organization=owner.organization)
    BlockFactory(block_id="theirs", organization=outsider.organization)
    html = owner_browser.get("/org/keys/").content.decode()
    assert '<option value="mine">' in html and "theirs" not in html
    owner_browser.post("/org/keys/", {"name": "narrow", "allowed_models": ["mine"]})
    assert ApiKey.objects.get(name="narrow").allowed_models == ["mine"]
    refused = owner_browser.post("/org/keys/", {"name": "wide", "allowed_models": ["globex/theirs"]})
    assert refused.status_code == 400 and not ApiKey.objects.filter(name="wide").exists()


@pytest.mark.parametrize(("data", "message"), [
    ({"name": ""}, "This field is required"),
    ({"name": "x", "expires_at": "2001-01-01T00:00"}, "must be in the future"),
    ({"name": "x", "expires_at": "soon"}, "Enter a valid date/time"),
])
def test_bad_key_input_is_shown_on_the_form(owner, owner_browser, data, message):
    before = ApiKey.objects.count()
    response = owner_browser.post("/org/keys/", data)
    assert response.status_code == 400 and message in response.content.decode()
    assert ApiKey.objects.count() == before


def test_an_owner_revokes_a_key_and_it_stops_working(owner, owner_browser):
    key = ApiKey.objects.get(organization=owner.organization, created_by=owner.user)
    response = owner_browser.post(f"/org/keys/{key.pk}/revoke/")
    assert response.status_code == 302
    key.refresh_from_db()
    assert key.revoked_at is not None
    assert "revoked" in owner_browser.get("/org/keys/").content.decode()


def test_an_outsider_gets_404_revoking_another_orgs_key_and_a_member_403(owner, member_browser, outsider_browser):
    key = ApiKey.objects.get(organization=owner.organization, created_by=owner.user)
    assert outsider_browser.post(f"/org/keys/{key.pk}/revoke/").status_code == 404
    assert member_browser.post(f"/org/keys/{key.pk}/revoke/").status_code == 403
    key.refresh_from_db()
    assert key.revoked_at is None


def test_the_keys_page_shows_a_keys_usage_against_its_quota(owner, owner_browser):
    key = ApiKey.objects.get(organization=owner.organization, created_by=owner.user)
    Quota.objects.create(organization=owner.organization, api_key=key, requests_per_minute=30)
    html = owner_browser.get("/org/keys/").content.decode()
    assert "requests / min: 0 / 30" in html


# Members -------------------------------------------------------------------------------------------

def test_an_owner_adds_a_member_changes_the_role_and_removes_them(owner, owner_browser):
    carol = get_user_model().objects.create_user(username="carol")
    assert owner_browser.post("/org/", {"username": "carol", "role": "member"}).status_code == 302
    membership = Membership.objects.get(user=carol, organization=owner.organization)
    owner_browser.post(f"/org/members/{membership.pk}/role/", {"role": "owner"})
    membership.refresh_from_db()
    assert membership.role == Membership.OWNER
    owner_browser.post(f"/org/members/{membership.pk}/remove/")
    assert not Membership.objects.filter(pk=membership.pk).exists()


def test_removing_a_member_revokes_the_keys_they_created(owner, member, owner_browser):
    membership = Membership.objects.get(user=member.user)
    owner_browser.post(f"/org/members/{membership.pk}/remove/")
    assert not ApiKey.objects.filter(created_by=member.user, revoked_at__isnull=True).exists()


def test_adding_an_unknown_user_or_an_existing_member_is_a_form_error(owner, member, owner_browser):
    unknown = owner_browser.post("/org/", {"username": "nobody", "role": "member"})
    assert unknown.status_code == 400 and "No user of that name can be added" in unknown.content.decode()
    again = owner_browser.post("/org/", {"username": "bob", "role": "member"})
    assert again.status_code == 400 and "already a member" in again.content.decode()


def _refusal(response) -> str:
    """The form's error, as shown: the same words whatever the reason."""
    return re.findall(r'class="errorlist[^"]*"[^>]*>\s*<li>(.*?)</li>', response.content.decode(), re.S)[0]


def test_adding_staff_a_superuser_or_another_orgs_user_is_refused_with_the_same_error_as_an_unknown_name(
        owner, outsider, owner_browser):
    users = get_user_model().objects
    users.create_user(username="sam", is_staff=True)
    users.create_superuser(username="root", password="x")
    answers = {name: owner_browser.post("/org/", {"username": name, "role": "member"})
               for name in ("nobody", "sam", "root", "mallory")}
    assert {name: r.status_code for name, r in answers.items()} == dict.fromkeys(answers, 400)
    assert len({_refusal(r) for r in answers.values()}) == 1  # an owner learns nothing about who exists
    assert "No user of that name can be added" in _refusal(answers["nobody"])
    assert set(Membership.objects.filter(organization=owner.organization).values_list("user__username", flat=True)) \
        == {"alice"}
    assert Membership.objects.get(user=outsider.user).organization == outsider.organization


def test_the_last_owner_cannot_demote_or_remove_themselves(owner, owner_browser):
    membership = Membership.objects.get(user=owner.user)
    page = owner_browser.post(f"/org/members/{membership.pk}/role/", {"role": "member"}, follow=True)
    assert "at least one owner" in page.content.decode()
    owner_browser.post(f"/org/members/{membership.pk}/remove/")
    membership.refresh_from_db()
    assert membership.role == Membership.OWNER


def test_an_outsider_gets_404_for_another_orgs_membership_and_a_member_403(owner, member, member_browser,
                                                                            outsider_browser):
    membership = Membership.objects.get(user=owner.user)
    assert outsider_browser.post(f"/org/members/{membership.pk}/role/", {"role": "member"}).status_code == 404
    assert outsider_browser.post(f"/org/members/{membership.pk}/remove/").status_code == 404
    assert member_browser.post(f"/org/members/{membership.pk}/role/", {"role": "member"}).status_code == 403
    assert outsider_browser.get("/org/").content.decode().count("alice") == 0


# Quotas --------------------------------------------------------------------------------------------

def test_an_owner_sets_and_replaces_the_organization_quota(owner, owner_browser):
    owner_browser.post("/org/quotas/", {"api_key": "", "requests_per_minute": "60", "budget_period": "month"})
    owner_browser.post("/org/quotas/", {"api_key": "", "requests_per_minute": "90", "budget_period": "day"})
    quota = Quota.objects.get(organization=owner.organization, api_key=None)
    assert quota.requests_per_minute == 90 and quota.budget_period == "day"


def test_a_quota_another_owner_creates_at_the_same_moment_is_a_form_error_not_a_500(owner, owner_browser):
    with another_owner_writes_first(lambda sql: sql.startswith('INSERT INTO "tenancy_quota"'), lambda: Quota.objects
                                    .create(organization=owner.organization, requests_per_minute=5)) as ran:
        response = owner_browser.post("/org/quotas/", {"api_key": "", "requests_per_minute": "60",
                                                       "budget_period": "month"})
    assert ran and response.status_code == 400 and "Another owner saved it first" in response.content.decode()


def test_a_negative_limit_or_another_orgs_key_is_refused(owner, outsider, owner_browser):
    negative = owner_browser.post("/org/quotas/", {"requests_per_minute": "-1", "budget_period": "month"})
    assert negative.status_code == 400 and "greater than or equal to 0" in negative.content.decode()
    foreign = ApiKey.objects.get(organization=outsider.organization)
    wrong = owner_browser.post("/org/quotas/", {"api_key": str(foreign.pk), "budget_period": "month"})
    assert wrong.status_code == 400
    assert not Quota.objects.exists()


def test_an_outsider_gets_404_deleting_another_orgs_quota_and_a_member_403(owner, member_browser, outsider_browser):
    quota = Quota.objects.create(organization=owner.organization, requests_per_minute=5)
    assert outsider_browser.post(f"/org/quotas/{quota.pk}/delete/").status_code == 404
    assert member_browser.post(f"/org/quotas/{quota.pk}/delete/").status_code == 403
    assert Quota.objects.filter(pk=quota.pk).exists()


# Policies ------------------------------------------------------------------------------------------

def test_an_owner_sets_a_block_policy_with_fallbacks(owner, owner_browser):
    BlockFactory(block_id="main", organization=owner.organization)
    BlockFactory(block_id="spare", organization=owner.organization)
    response = owner_browser.post("/org/policies/", {"block": "main", "timeout_s": "20", "retries": "2",
                                                     "retry_on": "429, 503", "fallbacks": "spare"})
    assert response.status_code == 302
    rule = PolicyRule.objects.get(organization=owner.organization, block__block_id="main")
    assert rule.timeout_s == 20 and rule.retry_on == [429, 503] and rule.fallbacks == ["spare"]


@pytest.mark.parametrize(("data", "message"), [
    ({"retries": "11"}, "less than or equal to 10"),
    ({"retry_on": "abc"}, "Status codes are numbers"),
    ({"retry_on": "200"}, "greater than or equal to 400"),
    ({"fallbacks": "globex-secret"}, "unknown block"),
    ({"allowed_protocols": "plain"}, "type/subtype"),
])
def test_bad_policy_input_is_shown_on_the_form(owner, outsider, owner_browser, data, message):
    BlockFactory(block_id="globex-secret", organization=outsider.organization)
    response = owner_browser.post("/org/policies/", data)
    assert response.status_code == 400 and message in response.content.decode()
    assert not PolicyRule.objects.exists()


def test_the_policies_page_shows_and_sets_approval_required(owner, member, owner_browser):
    BlockFactory(block_id="main", organization=owner.organization)
    held = owner_browser.post("/org/policies/", {"block": "main", "approval_required": "users",
                                                 "approval_users": "bob", "approval_deadline_s": "120"})
    assert held.status_code == 302
    rule = PolicyRule.objects.get(organization=owner.organization, block__block_id="main")
    assert rule.approval_required == {"approvers": {"users": ["bob"]}, "deadline_s": 120}
    html = owner_browser.get("/org/policies/").content.decode()
    assert "held: bob within 120 s" in html and "lifts its approval hold" in html
    assert owner_browser.post("/org/policies/", {"approval_required": "owner"}).status_code == 302
    org_rule = PolicyRule.objects.get(organization=owner.organization, block=None)
    assert org_rule.approval_required == {"approvers": {"role": "owner"}, "deadline_s": 3600}
    assert owner_browser.post("/org/policies/", {"block": "main", "approval_required": "off"}).status_code == 302
    rule.refresh_from_db()
    assert rule.approval_required is False
    assert "not held (lifted)" in owner_browser.get("/org/policies/").content.decode()


def test_approval_by_a_stranger_or_by_nobody_is_a_form_error(owner, outsider, owner_browser):
    stranger = owner_browser.post("/org/policies/", {"approval_required": "users", "approval_users": "mallory"})
    assert stranger.status_code == 400 and "not members of this organization: mallory" in stranger.content.decode()
    nobody = owner_browser.post("/org/policies/", {"approval_required": "users", "approval_users": ""})
    assert nobody.status_code == 400 and "names nobody" in nobody.content.decode()
    assert not PolicyRule.objects.exists()


def test_a_policy_another_owner_creates_at_the_same_moment_is_a_form_error_not_a_500(owner, owner_browser):
    with another_owner_writes_first(lambda sql: sql.startswith('INSERT INTO "tenancy_policyrule"'), lambda: PolicyRule
                                    .objects.create(organization=owner.organization, retries=1)) as ran:
        response = owner_browser.post("/org/policies/", {"retries": "2"})
    assert ran and response.status_code == 400 and "Another owner saved it first" in response.content.decode()


def test_an_outsider_gets_404_deleting_another_orgs_policy_and_a_member_403(owner, member_browser, outsider_browser):
    rule = PolicyRule.objects.create(organization=owner.organization, retries=1)
    assert outsider_browser.post(f"/org/policies/{rule.pk}/delete/").status_code == 404
    assert member_browser.post(f"/org/policies/{rule.pk}/delete/").status_code == 403
    assert PolicyRule.objects.filter(pk=rule.pk).exists()


# Grants --------------------------------------------------------------------------------------------

def test_an_owner_shares_a_private_block_and_stops_sharing_it(owner, outsider, owner_browser):
    block = BlockFactory(block_id="shared", organization=owner.organization)
    assert owner_browser.post("/org/grants/", {"block": block.pk, "organization": "globex"}).status_code == 302
    grant = BlockGrant.objects.get(block=block, organization=outsider.organization)
    owner_browser.post(f"/org/grants/{grant.pk}/delete/")
    assert not BlockGrant.objects.exists()


def test_granting_to_an_unknown_org_or_sharing_a_foreign_block_is_refused(owner, outsider, owner_browser):
    block = BlockFactory(block_id="shared", organization=owner.organization)
    foreign = BlockFactory(block_id="theirs", organization=outsider.organization)
    unknown = owner_browser.post("/org/grants/", {"block": block.pk, "organization": "nowhere"})
    assert unknown.status_code == 400 and "unknown organization" in unknown.content.decode()
    stolen = owner_browser.post("/org/grants/", {"block": foreign.pk, "organization": "acme"})
    assert stolen.status_code == 400
    assert not BlockGrant.objects.exists()


def test_sharing_a_block_made_public_while_the_form_was_checked_is_a_form_error_not_a_500(owner, outsider,
                                                                                         owner_browser):
    block = BlockFactory(block_id="shared", organization=owner.organization)
    # The block turns public after the form took its choices, before the page looks it up to share it.
    with another_owner_writes_first(lambda sql: 'FROM "registry_block"' in sql and "LIMIT 1" in sql,
                                    lambda: Block.objects.filter(pk=block.pk).update(visibility=Block.PUBLIC)) as ran:
        response = owner_browser.post("/org/grants/", {"block": block.pk, "organization": "globex"})
    assert ran and response.status_code == 400 and "no longer one of your private blocks" in response.content.decode()
    assert not BlockGrant.objects.exists()


def test_an_outsider_gets_404_deleting_another_orgs_grant_and_a_member_403(owner, outsider, member_browser,
                                                                          outsider_browser):
    grant = BlockGrant.objects.create(block=BlockFactory(organization=owner.organization, visibility=Block.PRIVATE),
                                      organization=outsider.organization)
    assert outsider_browser.post(f"/org/grants/{grant.pk}/delete/").status_code == 404
    assert member_browser.post(f"/org/grants/{grant.pk}/delete/").status_code == 403
    assert BlockGrant.objects.filter(pk=grant.pk).exists()
