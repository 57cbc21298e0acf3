"""Forms for the organization pages. Each one's cleaned data goes through the tenancy API's own
serializer (registry.tenancy.serializers), so the page and /api refuse the same things; the
serializer's errors come back onto the form's fields (`apply_serializer`)."""

from __future__ import annotations

from typing import Any

from django import forms
from rest_framework import serializers as drf
from rest_framework.exceptions import APIException

from registry.models import Membership
from registry.tenancy.constraints import APPROVAL_DEADLINE_DEFAULT_S, APPROVAL_DEADLINE_MAX_S
from registry.tenancy.models import Quota

ROLE_CHOICES = Membership.ROLES


def _messages(detail: Any) -> list[str]:
    if isinstance(detail, dict):
        return [f"{k}: {m}" if k not in ("non_field_errors",) else m for k, v in detail.items() for m in _messages(v)]
    if isinstance(detail, list):
        return [m for item in detail for m in _messages(item)]
    return [str(detail)]


def apply_serializer(form: forms.Form, serializer: drf.Serializer) -> dict[str, Any] | None:
    """Validate `serializer`; on failure put its errors on `form` (by field where the form has one)
    and return None. The tenancy serializers raise 404/422 exceptions for rules beyond the schema
    (an unknown block, a past expiry): those are form errors too here."""
    try:
        if serializer.is_valid():
            return dict(serializer.validated_data)
        detail: Any = serializer.errors
    except (APIException, drf.ValidationError) as exc:
        detail = exc.detail
    if isinstance(detail, dict):
        for key, value in detail.items():
            field = key if key in form.fields else None
            for message in _messages(value):
                form.add_error(field, message if field else (f"{key}: {message}" if key != "non_field_errors"
                                                             else message))
    else:
        for message in _messages(detail):
            form.add_error(None, message)
    return None


def _lines(text: str) -> list[str]:
    return [item.strip() for item in text.replace("\n", ",").split(",") if item.strip()]


class MemberAddForm(forms.Form):
    # Who may be added is registry.tenancy.services.membership_add's rule (one error for every refusal).
    username = forms.CharField(max_length=150, help_text="An existing user of this server who belongs to no "
                                                         "other organization.")
    role = forms.ChoiceField(choices=ROLE_CHOICES, initial=Membership.MEMBER)


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=ROLE_CHOICES)


class KeyCreateForm(forms.Form):
    name = forms.CharField(max_length=100)
    expires_at = forms.DateTimeField(required=False, label="Expires at (UTC)",
                                     widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
                                     input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S"],
                                     help_text="Leave empty for a key that does not expire.")
    allowed_models = forms.MultipleChoiceField(required=False, label="Allowed models",
                                               widget=forms.SelectMultiple(attrs={"size": 5}),
                                               help_text="None selected: every model the organization may use.")

    def __init__(self, *args: Any, models: list[str], **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.fields["allowed_models"].choices = [(m, m) for m in models]
        for name, field in self.fields.items():
            if field.help_text:
                field.widget.attrs.setdefault("aria-describedby", f"id_{name}_help")

    def api_data(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.cleaned_data["name"]}
        if self.cleaned_data.get("expires_at"):
            data["expires_at"] = self.cleaned_data["expires_at"].isoformat()
        if self.cleaned_data.get("allowed_models"):
            data["allowed_models"] = list(self.cleaned_data["allowed_models"])
        return data


class QuotaForm(forms.Form):
    api_key = forms.TypedChoiceField(required=False, coerce=int, empty_value=None, label="Applies to")
    requests_per_minute = forms.IntegerField(required=False, min_value=0, label="Requests per minute")
    tokens_per_minute = forms.IntegerField(required=False, min_value=0, label="Tokens per minute")
    token_budget = forms.IntegerField(required=False, min_value=0, label="Token budget")
    budget_period = forms.ChoiceField(choices=Quota.PERIODS, initial=Quota.MONTH, label="Budget period")

    def __init__(self, *args: Any, keys: list[tuple[int, str]], **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.fields["api_key"].choices = [("", "The whole organization"), *keys]

    def api_data(self) -> dict[str, Any]:
        return {name: self.cleaned_data.get(name) for name in self.fields}


APPROVAL_USERS, APPROVAL_OFF = "users", "off"
APPROVAL_CHOICES = [
    ("", "Inherit (the organization's rule, or not held)"),
    (Membership.OWNER, "Held: an owner approves"),
    (Membership.MEMBER, "Held: any member approves"),
    (APPROVAL_USERS, "Held: the users named here approve"),
    (APPROVAL_OFF, "Not held (lifts the organization's hold for this block)"),
]


class PolicyForm(forms.Form):
    block = forms.ChoiceField(required=False, label="Applies to")
    timeout_s = forms.FloatField(required=False, min_value=0.1, max_value=3600, label="Timeout (s)")
    retries = forms.IntegerField(required=False, min_value=0, max_value=10)
    backoff_s = forms.FloatField(required=False, min_value=0, max_value=60, label="Backoff (s)")
    retry_on = forms.CharField(required=False, label="Retry on status", help_text="Comma-separated, e.g. 429, 503")
    fallbacks = forms.CharField(required=False, help_text="Block ids, comma-separated, tried in order")
    max_input_tokens = forms.IntegerField(required=False, min_value=1, label="Max input tokens")
    max_output_tokens = forms.IntegerField(required=False, min_value=1, label="Max output tokens")
    allowed_protocols = forms.CharField(required=False, label="Allowed protocols",
                                        help_text="Comma-separated, e.g. text/plain")
    # The stored rule's `approval_required` (registry.tenancy.constraints.approval_rule), as three fields.
    approval_required = forms.ChoiceField(required=False, label="Approval", choices=APPROVAL_CHOICES,
                                          help_text="Hold each chat request until a person decides")
    approval_users = forms.CharField(required=False, label="Approvers (usernames)",
                                     help_text="Comma-separated members, for “the users named here”")
    approval_deadline_s = forms.IntegerField(required=False, min_value=1, max_value=APPROVAL_DEADLINE_MAX_S,
                                             label="Approval deadline (s)",
                                             help_text=f"Refused after it; empty: {APPROVAL_DEADLINE_DEFAULT_S} s")

    def __init__(self, *args: Any, blocks: list[str], **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.fields["block"].choices = [("", "Every block (organization-wide)"), *[(b, b) for b in blocks]]
        for name, field in self.fields.items():
            if field.help_text:
                field.widget.attrs.setdefault("aria-describedby", f"id_{name}_help")

    def clean_retry_on(self) -> list[int] | None:
        items = _lines(self.cleaned_data.get("retry_on", ""))
        try:
            return [int(item) for item in items] or None
        except ValueError as exc:
            raise forms.ValidationError("Status codes are numbers, e.g. 429, 503.") from exc

    def api_data(self) -> dict[str, Any]:
        data = {name: self.cleaned_data.get(name) for name in
                ("timeout_s", "retries", "backoff_s", "retry_on", "max_input_tokens", "max_output_tokens")}
        data["block"] = self.cleaned_data.get("block") or None
        data["fallbacks"] = _lines(self.cleaned_data.get("fallbacks", "")) or None
        data["allowed_protocols"] = _lines(self.cleaned_data.get("allowed_protocols", "")) or None
        data["approval_required"] = self._approval_rule()
        return data

    def _approval_rule(self) -> dict[str, Any] | bool | None:
        choice = self.cleaned_data.get("approval_required") or ""
        if choice in ("", APPROVAL_OFF):
            return None if choice == "" else False
        approvers = ({"users": _lines(self.cleaned_data.get("approval_users", ""))} if choice == APPROVAL_USERS
                     else {"role": choice})
        rule: dict[str, Any] = {"approvers": approvers}
        if self.cleaned_data.get("approval_deadline_s") is not None:
            rule["deadline_s"] = self.cleaned_data["approval_deadline_s"]
        return rule


class GrantForm(forms.Form):
    block = forms.ChoiceField(label="Your block")
    organization = forms.CharField(max_length=100, label="Organization (slug)")

    def __init__(self, *args: Any, blocks: list[tuple[int, str]], **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.fields["block"].choices = blocks
