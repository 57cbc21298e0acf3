"""Per-organization rules: quotas, policy rules and the organization's own model names."""

from __future__ import annotations

from typing import Any

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from registry.models import ApiKey, Block, Organization
from registry.selectors import block_reference


class Quota(models.Model):
    """Limits for a whole organization (api_key empty) or for one of its keys.

    Empty limits mean "no limit". Both the key's and the organization's quota apply to a
    call made with the key; the stricter one refuses first.
    """

    DAY = "day"
    MONTH = "month"
    PERIODS = [(DAY, "Day"), (MONTH, "Month")]

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="quotas")
    api_key = models.ForeignKey(ApiKey, null=True, blank=True, on_delete=models.CASCADE, related_name="quotas")
    requests_per_minute = models.PositiveIntegerField(null=True, blank=True)
    tokens_per_minute = models.PositiveBigIntegerField(null=True, blank=True)
    token_budget = models.PositiveBigIntegerField(null=True, blank=True)
    budget_period = models.CharField(max_length=5, choices=PERIODS, default=MONTH)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organization", "api_key"], name="unique_key_quota"),
            models.UniqueConstraint(fields=["organization"], condition=models.Q(api_key__isnull=True),
                                    name="unique_org_quota"),
        ]

    def __str__(self) -> str:
        return f"quota {self.organization_id}/{self.api_key_id or '*'}"

    @property
    def scope(self) -> str:
        return f"key:{self.api_key_id}" if self.api_key_id else f"org:{self.organization_id}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.pk,
            "apiKey": self.api_key_id,
            "requestsPerMinute": self.requests_per_minute,
            "tokensPerMinute": self.tokens_per_minute,
            "tokenBudget": self.token_budget,
            "budgetPeriod": self.budget_period,
            "updatedAt": self.updated_at.isoformat() if self.updated_at else None,
        }


class PolicyRule(models.Model):
    """How one organization's calls run: for all its calls (block empty) or for one block.

    Empty fields inherit (request > block rule > organization rule > defaults).
    """

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="policy_rules")
    block = models.ForeignKey(Block, null=True, blank=True, on_delete=models.CASCADE, related_name="policy_rules")
    timeout_s = models.FloatField(null=True, blank=True,
                                  validators=[MinValueValidator(0.1), MaxValueValidator(3600)])
    retries = models.PositiveSmallIntegerField(null=True, blank=True, validators=[MaxValueValidator(10)])
    backoff_s = models.FloatField(null=True, blank=True, validators=[MinValueValidator(0), MaxValueValidator(60)])
    retry_on = models.JSONField(null=True, blank=True)
    fallbacks = models.JSONField(null=True, blank=True)
    max_input_tokens = models.PositiveIntegerField(null=True, blank=True)
    max_output_tokens = models.PositiveIntegerField(null=True, blank=True)
    allowed_protocols = models.JSONField(null=True, blank=True)
    # A person approves each chat request first (constraints.approval_rule's shape): an object
    # {"approvers", "deadline_s"}, or false where a block rule lifts its organization's.
    approval_required = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    FIELDS = ("timeout_s", "retries", "backoff_s", "retry_on", "fallbacks", "max_input_tokens",
              "max_output_tokens", "allowed_protocols", "approval_required")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organization", "block"], name="unique_block_policy"),
            models.UniqueConstraint(fields=["organization"], condition=models.Q(block__isnull=True),
                                    name="unique_org_policy"),
        ]

    def __str__(self) -> str:
        return f"policy {self.organization_id}/{self.block_id or '*'}"

    def values(self) -> dict[str, Any]:
        """The fields this rule sets (the ones it leaves empty inherit)."""
        return {name: getattr(self, name) for name in self.FIELDS if getattr(self, name) is not None}

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.pk,
            "block": block_reference(self.block, organization=self.organization) if self.block_id else None,
            **{name: getattr(self, name) for name in self.FIELDS},
            "updatedAt": self.updated_at.isoformat() if self.updated_at else None,
        }


class OrgModel(models.Model):
    """An organization's own name for a block it may use (the seed's OrgLLMsManager registry)."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="org_models")
    name = models.CharField(max_length=200)
    block = models.ForeignKey(Block, on_delete=models.CASCADE, related_name="org_names")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["organization", "name"], name="unique_org_model_name")]

    def __str__(self) -> str:
        return f"{self.organization_id}:{self.name} -> {self.block_id}"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "blockId": block_reference(self.block, organization=self.organization),
                "block": self.block.to_dict(),
                "createdAt": self.created_at.isoformat() if self.created_at else None}
