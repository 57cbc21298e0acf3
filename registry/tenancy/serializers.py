"""Input validation for the tenancy API. The caller's organization comes in the context."""

from __future__ import annotations

from django.utils import timezone
from rest_framework import serializers

from registry.models import ApiKey, Organization
from registry.tenancy.constraints import RULE_KEYS, validate_rule_values
from registry.tenancy.models import Quota
from registry.tenancy.selectors import block_visible_get


def _visible_block(organization, block_id: str):
    # An own or platform id, or another organization's qualified id "<org-slug>/<block-id>".
    block = block_visible_get(organization=organization, block_id=block_id)
    if block is None:
        # Same words as a missing block: a foreign private block must not be revealed.
        raise serializers.ValidationError(f"unknown block {block_id!r}")
    return block


class ApiKeyCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    expires_at = serializers.DateTimeField(required=False, allow_null=True)
    allowed_models = serializers.ListField(child=serializers.CharField(max_length=200), required=False,
                                           max_length=200)

    def validate_expires_at(self, value):
        if value is not None and value <= timezone.now():
            raise serializers.ValidationError("must be in the future")
        return value

    def validate_allowed_models(self, value):
        org = self.context["organization"]
        for block_id in value:
            _visible_block(org, block_id)
        return list(dict.fromkeys(value))


class GrantCreateSerializer(serializers.Serializer):
    organization = serializers.SlugField(max_length=100)

    def validate_organization(self, value):
        org = Organization.objects.filter(slug=value).first()
        if org is None:
            raise serializers.ValidationError(f"unknown organization {value!r}")
        if org.pk == self.context["organization"].pk:
            raise serializers.ValidationError("an organization always sees its own blocks")
        return org


class OrgModelSerializer(serializers.Serializer):
    # The name goes in URLs (/api/orgs/<slug>/models/<name>), so no slashes.
    name = serializers.RegexField(r"^[A-Za-z0-9][A-Za-z0-9._:@+-]{0,199}$", max_length=200)
    block_id = serializers.CharField(max_length=200)

    def validate_block_id(self, value):
        return _visible_block(self.context["organization"], value)


class PolicyRuleSerializer(serializers.Serializer):
    block = serializers.CharField(max_length=200, required=False, allow_null=True,
                                  help_text="block id; empty for the organization-wide rule")
    timeout_s = serializers.FloatField(required=False, allow_null=True, min_value=0.1, max_value=3600)
    retries = serializers.IntegerField(required=False, allow_null=True, min_value=0, max_value=10)
    backoff_s = serializers.FloatField(required=False, allow_null=True, min_value=0, max_value=60)
    retry_on = serializers.ListField(child=serializers.IntegerField(min_value=400, max_value=599),
                                     required=False, allow_null=True, max_length=50)
    fallbacks = serializers.ListField(child=serializers.CharField(max_length=200), required=False,
                                      allow_null=True, max_length=10)
    max_input_tokens = serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=10_000_000)
    max_output_tokens = serializers.IntegerField(required=False, allow_null=True, min_value=1,
                                                 max_value=10_000_000)
    allowed_protocols = serializers.ListField(child=serializers.CharField(max_length=100), required=False,
                                              allow_null=True, max_length=50)

    def validate_block(self, value):
        return None if value in (None, "") else _visible_block(self.context["organization"], value)

    def validate_fallbacks(self, value):
        if value:
            for block_id in value:
                _visible_block(self.context["organization"], block_id)
        return value

    def validate(self, attrs):
        values = {k: attrs[k] for k in RULE_KEYS if k in attrs}
        try:
            checked = validate_rule_values(values)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from exc
        # An explicit null clears a field (it inherits again).
        out = {k: checked.get(k) for k in values}
        block = attrs.get("block") or getattr(self.instance, "block", None)
        org = self.context["organization"]
        if block is not None and any(_visible_block(org, ref).pk == block.pk for ref in out.get("fallbacks") or []):
            raise serializers.ValidationError({"fallbacks": "a block cannot fall back to itself"})
        if "block" in attrs:
            out["block"] = attrs["block"]
        return out


class QuotaSerializer(serializers.Serializer):
    api_key = serializers.IntegerField(required=False, allow_null=True, min_value=1,
                                       help_text="id of one of your keys; empty for the organization-wide quota")
    requests_per_minute = serializers.IntegerField(required=False, allow_null=True, min_value=0,
                                                   max_value=10_000_000)
    tokens_per_minute = serializers.IntegerField(required=False, allow_null=True, min_value=0,
                                                 max_value=10**12)
    token_budget = serializers.IntegerField(required=False, allow_null=True, min_value=0, max_value=10**15)
    budget_period = serializers.ChoiceField(choices=[p for p, _ in Quota.PERIODS], required=False)

    def validate_api_key(self, value):
        if value is None:
            return None
        key = ApiKey.objects.filter(pk=value, organization=self.context["organization"]).first()
        if key is None:
            raise serializers.ValidationError(f"unknown API key {value}")
        return key
