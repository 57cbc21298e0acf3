"""Input validation for the tenancy API. The caller's organization comes in the context."""

from __future__ import annotations

from django.core.validators import RegexValidator
from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from registry.envelope import ReferenceNotFound, Unprocessable
from registry.fields import (
    StrictCharField,
    StrictChoiceField,
    StrictFloatField,
    StrictIntegerField,
    StrictRegexField,
    StrictSlugField,
)
from registry.models import ApiKey, Membership, Organization
from registry.tenancy.constraints import (
    APPROVAL_DEADLINE_MAX_S,
    APPROVER_ROLES,
    MAX_APPROVER_USERS,
    STORED_KEYS,
    validate_rule_values,
)
from registry.tenancy.models import Quota
from registry.tenancy.selectors import block_visible_get


def _visible_block(organization, block_id: str, field: str):
    # An own or platform id, or another organization's qualified id "<org-slug>/<block-id>".
    # Called from validate(), once every field is well formed: a missing reference is a 404.
    block = block_visible_get(organization=organization, block_id=block_id)
    if block is None:
        # Same words as a missing block: a foreign private block must not be revealed.
        raise ReferenceNotFound({field: [f"unknown block {block_id!r}"]})
    return block


class ApiKeyCreateSerializer(serializers.Serializer):
    name = StrictCharField(max_length=100)
    expires_at = serializers.DateTimeField(required=False, allow_null=True)
    allowed_models = serializers.ListField(child=StrictCharField(max_length=200), required=False,
                                           max_length=200)

    def validate(self, attrs):
        if "allowed_models" in attrs:
            for block_id in attrs["allowed_models"]:
                _visible_block(self.context["organization"], block_id, "allowed_models")
            attrs["allowed_models"] = list(dict.fromkeys(attrs["allowed_models"]))
        if attrs.get("expires_at") is not None and attrs["expires_at"] <= timezone.now():
            raise Unprocessable({"expires_at": ["must be in the future"]})
        return attrs


class GrantCreateSerializer(serializers.Serializer):
    organization = StrictSlugField(max_length=100)

    def validate(self, attrs):
        slug = attrs["organization"]
        org = Organization.objects.filter(slug=slug).first()
        if org is None:
            raise ReferenceNotFound({"organization": [f"unknown organization {slug!r}"]})
        if org.pk == self.context["organization"].pk:
            raise Unprocessable({"organization": ["an organization always sees its own blocks"]})
        return {**attrs, "organization": org}


class OrgModelSerializer(serializers.Serializer):
    # The name goes in URLs (/api/orgs/<slug>/models/<name>), so no slashes.
    name = StrictRegexField(r"^[A-Za-z0-9][A-Za-z0-9._:@+-]{0,199}$", max_length=200)
    block_id = StrictCharField(max_length=200)

    def validate(self, attrs):
        return {**attrs, "block_id": _visible_block(self.context["organization"], attrs["block_id"], "block_id")}


# constraints._protocol's rule, stated for the schema: "type/subtype", both parts non-blank.
PROTOCOL_FORM = RegexValidator(r"^\s*[^/\s][^/]*/[^/]*[^/\s]\s*$", "must look like 'type/subtype' (e.g. text/plain, image/*)")


# constraints.approval_rule's rule, stated for the schema.
APPROVAL_RULE_SCHEMA = {
    "description": "Each chat request waits for a person's decision (docs/workflows.md): true (owners, within "
                   "an hour), false (lifts the organization's rule for this block), or an object. A named "
                   "user who is not a member of the organization is a 422.",
    "nullable": True,
    "oneOf": [
        {"type": "boolean"},
        {"type": "object", "additionalProperties": False, "properties": {
            "approvers": {"oneOf": [
                {"type": "object", "additionalProperties": False, "required": ["role"],
                 "properties": {"role": {"type": "string", "enum": list(APPROVER_ROLES)}}},
                {"type": "object", "additionalProperties": False, "required": ["users"],
                 "properties": {"users": {"type": "array", "minItems": 1, "maxItems": MAX_APPROVER_USERS,
                                          "items": {"type": "string", "minLength": 1, "maxLength": 150}}}},
            ]},
            "deadline_s": {"type": "integer", "minimum": 1, "maximum": APPROVAL_DEADLINE_MAX_S},
        }},
    ],
}


@extend_schema_field(APPROVAL_RULE_SCHEMA)
class ApprovalRuleField(serializers.JSONField):
    pass


class PolicyRuleSerializer(serializers.Serializer):
    block = StrictCharField(max_length=200, required=False, allow_null=True,
                                  help_text="block id; empty for the organization-wide rule")
    timeout_s = StrictFloatField(required=False, allow_null=True, min_value=0.1, max_value=3600)
    retries = StrictIntegerField(required=False, allow_null=True, min_value=0, max_value=10)
    backoff_s = StrictFloatField(required=False, allow_null=True, min_value=0, max_value=60)
    retry_on = serializers.ListField(child=StrictIntegerField(min_value=400, max_value=599),
                                     required=False, allow_null=True, max_length=50)
    fallbacks = serializers.ListField(child=StrictCharField(max_length=200), required=False,
                                      allow_null=True, max_length=10)
    max_input_tokens = StrictIntegerField(required=False, allow_null=True, min_value=1, max_value=10_000_000)
    max_output_tokens = StrictIntegerField(required=False, allow_null=True, min_value=1,
                                                 max_value=10_000_000)
    allowed_protocols = serializers.ListField(child=StrictCharField(max_length=100, validators=[PROTOCOL_FORM]),
                                              required=False,
                                              allow_null=True, max_length=50)
    approval_required = ApprovalRuleField(required=False, allow_null=True)

    def validate(self, attrs):
        values = {k: attrs[k] for k in STORED_KEYS if k in attrs}
        try:
            checked = validate_rule_values(values)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from exc
        # An explicit null clears a field (it inherits again).
        out = {k: checked.get(k) for k in values}
        org = self.context["organization"]
        if "block" in attrs:
            out["block"] = None if attrs["block"] in (None, "") else _visible_block(org, attrs["block"], "block")
        fallbacks = [_visible_block(org, ref, "fallbacks") for ref in out.get("fallbacks") or []]
        block = out.get("block") or getattr(self.instance, "block", None)
        if block is not None and any(fallback.pk == block.pk for fallback in fallbacks):
            raise Unprocessable({"fallbacks": ["a block cannot fall back to itself"]})
        users = (out.get("approval_required") or {}).get("approvers", {}).get("users") or []
        strangers = sorted(set(users) - set(Membership.objects.filter(organization=org, user__username__in=users)
                                            .values_list("user__username", flat=True)))
        if strangers:
            raise Unprocessable({"approval_required": [f"not members of this organization: {', '.join(strangers)}"]})
        return out


class QuotaSerializer(serializers.Serializer):
    api_key = StrictIntegerField(required=False, allow_null=True, min_value=1,
                                       help_text="id of one of your keys; empty for the organization-wide quota")
    requests_per_minute = StrictIntegerField(required=False, allow_null=True, min_value=0,
                                                   max_value=10_000_000)
    tokens_per_minute = StrictIntegerField(required=False, allow_null=True, min_value=0,
                                                 max_value=10**12)
    token_budget = StrictIntegerField(required=False, allow_null=True, min_value=0, max_value=10**15)
    budget_period = StrictChoiceField(choices=[p for p, _ in Quota.PERIODS], required=False)

    def validate(self, attrs):
        value = attrs.get("api_key")
        if value is not None:
            key = ApiKey.objects.filter(pk=value, organization=self.context["organization"]).first()
            if key is None:
                raise ReferenceNotFound({"api_key": [f"unknown API key {value}"]})
            attrs = {**attrs, "api_key": key}
        return attrs
