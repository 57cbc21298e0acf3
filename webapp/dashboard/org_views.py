"""Organization pages: members and roles, API keys (shown once, revoked, usage against quota),
quotas, policy rules and grants: the owner's daily work without /admin/.

Every member reads; every write needs the owner role (403 otherwise). Everything is looked up within
the user's own organization, so another organization's member, key, quota, rule or grant is a 404.
Writes go through registry.services / registry.tenancy.services, validated by the tenancy API's
serializers, as /api's are."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import urlencode
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from inference import rollups
from inference.selectors import request_counts_by_key
from registry.models import ApiKey, Block, BlockGrant, Membership
from registry.principal import Principal
from registry.selectors import block_reference, blocks_visible_to
from registry.services import KeyRightsError, api_key_create
from registry.tenancy import services
from registry.tenancy.models import PolicyRule, Quota
from registry.tenancy.quota import quota_store
from registry.tenancy.rules import load_org_rules
from registry.tenancy.selectors import api_keys_of, members_of, policy_rules_of, quotas_of
from registry.tenancy.serializers import (
    ApiKeyCreateSerializer,
    GrantCreateSerializer,
    PolicyRuleSerializer,
    QuotaSerializer,
)
from webapp.dashboard.access import require_member, require_owner
from webapp.dashboard.org_forms import (
    GrantForm,
    KeyCreateForm,
    MemberAddForm,
    PolicyForm,
    QuotaForm,
    RoleForm,
    apply_serializer,
)


def _rendered(request: HttpRequest, template: str, context: dict[str, Any], *, failed: bool) -> HttpResponse:
    # A refused form answers 400 with the form and its errors, so a test (or a script) can tell.
    return render(request, template, context, status=400 if failed else 200)


def _one(queryset, pk: int):
    found = queryset.filter(pk=pk).first()
    if found is None:
        raise Http404("Not found.")
    return found


# Members -------------------------------------------------------------------------------------------

@login_required
def members(request: HttpRequest) -> HttpResponse:
    principal = require_member(request)
    form = MemberAddForm()
    failed = False
    if request.method == "POST":
        require_owner(request, "add members")
        form = MemberAddForm(request.POST)
        if form.is_valid():
            try:
                added = services.membership_add(organization=principal.organization,
                                                username=form.cleaned_data["username"], role=form.cleaned_data["role"])
            except (services.Conflict, services.MemberRefused) as exc:
                form.add_error("username", str(exc))
            else:
                messages.success(request, f"Added {added.user.get_username()}.")
                return redirect("dashboard-members")
        failed = True
    return _rendered(request, "dashboard/org/members.html", {
        "members": members_of(principal.organization), "form": form, "roles": Membership.ROLES,
    }, failed=failed)


@login_required
@require_POST
def member_role(request: HttpRequest, pk: int) -> HttpResponse:
    principal = require_member(request)
    membership = _one(members_of(principal.organization), pk)
    require_owner(request, "change roles")
    form = RoleForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose owner or member.")
        return redirect("dashboard-members")
    try:
        services.membership_set_role(membership=membership, role=form.cleaned_data["role"])
    except services.LastOwner as exc:
        messages.error(request, str(exc).capitalize() + ".")
    else:
        messages.success(request, f"{membership.user.get_username()} is now {membership.role}.")
    return redirect("dashboard-members")


@login_required
@require_POST
def member_remove(request: HttpRequest, pk: int) -> HttpResponse:
    principal = require_member(request)
    membership = _one(members_of(principal.organization), pk)
    require_owner(request, "remove members")
    try:
        services.membership_remove(membership=membership)
    except services.LastOwner as exc:
        messages.error(request, str(exc).capitalize() + ".")
    else:
        messages.success(request, f"Removed {membership.user.get_username()} and revoked the keys they created.")
    return redirect("dashboard-members")


# API keys ------------------------------------------------------------------------------------------

def _model_names(principal: Principal) -> list[str]:
    """What a key's allowed_models may list: how the organization names each block it may call."""
    org = principal.organization
    return sorted(block_reference(b, organization=org) for b in blocks_visible_to(org).filter(enabled=True))


def key_usage(principal: Principal, keys: list[ApiKey]) -> dict[int, dict[str, Any]]:
    """Each key's quota (if it has one) with what it used in the current windows, from the quota store
    the gateway charges, so the page shows the numbers that refuse requests."""
    rules = load_org_rules(principal.organization.pk)
    store = quota_store()
    usage: dict[int, dict[str, Any]] = {}
    for key in keys:
        limits = rules.quotas.get(key.pk)
        if limits is not None and not limits.empty:
            usage[key.pk] = store.remaining(limits)
    return usage


# The windows of each key's request count on the keys page (rollups' windows: from a minute boundary).
KEY_REQUEST_WINDOWS = ("24h", "7d")


def key_requests(principal: Principal, keys: list[ApiKey]) -> dict[int, list[dict[str, Any]]]:
    """Each key's requests over KEY_REQUEST_WINDOWS from the request log, each with the /logs/ link
    (that key, from the same minute) that lists exactly the requests counted."""
    now = timezone.now()
    since = {window: rollups.window_start(window, now) for window in KEY_REQUEST_WINDOWS}
    counts = request_counts_by_key(organization=principal.organization, since=since)
    log_url = reverse("dashboard-request-log")
    return {key.pk: [{"window": window, "count": counts.get(key.pk, {}).get(window, 0),
                      "url": f"{log_url}?{urlencode({'key': key.pk, 'since': start.strftime('%Y-%m-%dT%H:%M')})}"}
                     for window, start in since.items()]
            for key in keys}


RULE_LABELS = {"requests_per_minute": "requests / min", "tokens_per_minute": "tokens / min",
               "token_budget": "token budget"}


def _usage_rows(usage: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for rule, numbers in usage.items():
        label = next((text for name, text in RULE_LABELS.items() if rule.startswith(name)), rule)
        limit = numbers.get("limit") or 0
        rows.append({"label": label, **numbers, "percent": round(100 * numbers["used"] / limit) if limit else 0})
    return rows


@never_cache  # the answer to the create form holds the raw key: no browser or proxy cache may keep it
@login_required
def keys(request: HttpRequest) -> HttpResponse:
    principal = require_member(request)
    names = _model_names(principal)
    form = KeyCreateForm(models=names)
    created: tuple[ApiKey, str] | None = None
    failed = False
    if request.method == "POST":
        require_owner(request, "create API keys")
        form = KeyCreateForm(request.POST, models=names)
        if form.is_valid():
            values = apply_serializer(form, ApiKeyCreateSerializer(
                data=form.api_data(), context={"organization": principal.organization}))
            if values is not None:
                try:
                    created = api_key_create(organization=principal.organization, created_by=request.user, **values)
                except KeyRightsError as exc:
                    form.add_error(None, str(exc))
                else:
                    form = KeyCreateForm(models=names)
        failed = created is None
    rows = list(api_keys_of(principal.organization).select_related("created_by"))
    usage = key_usage(principal, rows)
    requests = key_requests(principal, rows)
    for key in rows:
        key.usage_rows = _usage_rows(usage.get(key.pk, {}))
        key.request_counts = requests[key.pk]
    # The raw key is in this one response and nowhere else: it is not stored, only its hash.
    return _rendered(request, "dashboard/org/keys.html", {
        "keys": rows, "form": form, "created": created[0] if created else None,
        "raw_key": created[1] if created else None,
    }, failed=failed)


@login_required
@require_POST
def key_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    principal = require_member(request)
    key = _one(api_keys_of(principal.organization), pk)
    require_owner(request, "revoke API keys")
    services.api_key_revoke(api_key=key)
    messages.success(request, f"Revoked {key.name} ({key.prefix}…) and any key it created.")
    return redirect("dashboard-keys")


# Quotas --------------------------------------------------------------------------------------------

def _key_choices(principal: Principal) -> list[tuple[int, str]]:
    return [(k.pk, f"Key {k.name} ({k.prefix}…)") for k in api_keys_of(principal.organization)
            if k.revoked_at is None]


@login_required
def quotas(request: HttpRequest) -> HttpResponse:
    principal = require_member(request)
    org = principal.organization
    form = QuotaForm(keys=_key_choices(principal))
    failed = False
    if request.method == "POST":
        require_owner(request, "manage quotas")
        form = QuotaForm(request.POST, keys=_key_choices(principal))
        if form.is_valid():
            values = apply_serializer(form, QuotaSerializer(data=form.api_data(), context={"organization": org}))
            if values is not None:
                api_key = values.pop("api_key", None)
                # One quota per scope: saving a scope that has one changes it.
                existing = quotas_of(org).filter(api_key=api_key).first()
                try:
                    if existing is not None:
                        services.quota_update(quota=existing, values=values)
                    else:
                        services.quota_create(organization=org, api_key=api_key, values=values)
                except services.Conflict as exc:  # another owner saved this scope's first quota meanwhile
                    form.add_error(None, f"Another owner saved it first ({exc}): save again to replace it.")
                else:
                    messages.success(request, "Quota saved.")
                    return redirect("dashboard-quotas")
        failed = True
    rows = list(quotas_of(org).select_related("api_key"))
    store = quota_store()
    rules = load_org_rules(org.pk)
    for quota in rows:
        limits = rules.quotas.get(quota.api_key_id)
        quota.usage_rows = _usage_rows(store.remaining(limits)) if limits is not None and not limits.empty else []
    return _rendered(request, "dashboard/org/quotas.html", {"quotas": rows, "form": form}, failed=failed)


@login_required
@require_POST
def quota_delete(request: HttpRequest, pk: int) -> HttpResponse:
    principal = require_member(request)
    quota: Quota = _one(quotas_of(principal.organization), pk)
    require_owner(request, "manage quotas")
    services.quota_delete(quota=quota)
    messages.success(request, "Quota removed.")
    return redirect("dashboard-quotas")


# Policy rules --------------------------------------------------------------------------------------

@login_required
def policies(request: HttpRequest) -> HttpResponse:
    principal = require_member(request)
    org = principal.organization
    names = _model_names(principal)
    form = PolicyForm(blocks=names)
    failed = False
    if request.method == "POST":
        require_owner(request, "manage policies")
        form = PolicyForm(request.POST, blocks=names)
        if form.is_valid():
            values = apply_serializer(form, PolicyRuleSerializer(data=form.api_data(), context={"organization": org}))
            if values is not None:
                block = values.pop("block", None)
                existing = policy_rules_of(org).filter(block=block).first()
                try:
                    if existing is not None:
                        services.policy_rule_update(rule=existing, values=values)
                    else:
                        services.policy_rule_create(organization=org, block=block, values=values)
                except services.Conflict as exc:  # another owner saved this scope's first rule meanwhile
                    form.add_error(None, f"Another owner saved it first ({exc}): save again to replace it.")
                else:
                    messages.success(request, "Policy saved.")
                    return redirect("dashboard-policies")
        failed = True
    rules = [rule.to_dict() for rule in policy_rules_of(org)]
    return _rendered(request, "dashboard/org/policies.html", {"rules": rules, "form": form}, failed=failed)


@login_required
@require_POST
def policy_delete(request: HttpRequest, pk: int) -> HttpResponse:
    principal = require_member(request)
    rule: PolicyRule = _one(policy_rules_of(principal.organization), pk)
    require_owner(request, "manage policies")
    services.policy_rule_delete(rule=rule)
    messages.success(request, "Policy removed.")
    return redirect("dashboard-policies")


# Grants --------------------------------------------------------------------------------------------

def _own_private_blocks(principal: Principal) -> list[tuple[int, str]]:
    return [(b.pk, b.block_id) for b in Block.objects.filter(organization=principal.organization,
                                                              visibility=Block.PRIVATE).order_by("block_id")]


def _grants_of_org(principal: Principal):
    return (BlockGrant.objects.filter(block__organization=principal.organization)
            .select_related("block", "organization").order_by("block__block_id", "organization__slug"))


@login_required
def grants(request: HttpRequest) -> HttpResponse:
    principal = require_member(request)
    org = principal.organization
    form = GrantForm(blocks=_own_private_blocks(principal))
    failed = False
    if request.method == "POST":
        require_owner(request, "share blocks")
        form = GrantForm(request.POST, blocks=_own_private_blocks(principal))
        # The block was offered when the page was drawn; it may have been deleted or made public since.
        block = (Block.objects.filter(pk=form.cleaned_data["block"], organization=org, visibility=Block.PRIVATE)
                 .first() if form.is_valid() else None)
        if form.is_valid() and block is None:
            form.add_error("block", "That block is no longer one of your private blocks.")
        if form.is_valid():
            values = apply_serializer(form, GrantCreateSerializer(
                data={"organization": form.cleaned_data["organization"]}, context={"organization": org}))
            if values is not None:
                try:
                    services.block_grant_create(block=block, organization=values["organization"])
                except services.Conflict as exc:
                    form.add_error("organization", str(exc))
                else:
                    messages.success(request, f"Shared {block.block_id} with {values['organization'].slug}.")
                    return redirect("dashboard-grants")
        failed = True
    return _rendered(request, "dashboard/org/grants.html", {"grants": _grants_of_org(principal), "form": form},
                     failed=failed)


@login_required
@require_POST
def grant_delete(request: HttpRequest, pk: int) -> HttpResponse:
    principal = require_member(request)
    grant = _one(_grants_of_org(principal), pk)
    require_owner(request, "stop sharing blocks")
    services.block_grant_delete(grant=grant)
    messages.success(request, f"Stopped sharing {grant.block.block_id} with {grant.organization.slug}.")
    return redirect("dashboard-grants")
