from django.contrib import admin, messages

from registry.models import ApiKey
from registry.tenancy.models import OrgModel, PolicyRule, Quota
from registry.tenancy.services import api_key_revoke


# Keys live in registry.models, but their lifecycle (revocation with the keys they minted) is
# tenancy's, so their admin is here, above the registry layer.
@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Keys are made here as through the API: the raw key is shown once, only its hash is stored."""

    list_display = ("name", "prefix", "organization", "created_by", "created_at", "expires_at", "revoked_at")
    list_filter = ("organization",)
    actions = ["revoke"]

    def get_fields(self, request, obj=None):
        if obj is None:
            return ("organization", "name", "expires_at", "allowed_models")
        return ("organization", "name", "prefix", "created_by", "role", "parent", "created_at", "last_used_at",
                "expires_at", "revoked_at", "allowed_models")

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return ()
        # A key never changes hands, and revoking goes through the action (it also clears caches).
        fields = ("organization", "prefix", "created_by", "role", "parent", "created_at", "last_used_at", "revoked_at")
        if obj.children.exists():
            # Keys it minted were checked against its limits when made; widening or narrowing it here
            # would leave them out of step. Revoke it (they go with it) and make another instead.
            fields += ("expires_at", "allowed_models")
        return fields

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
            return
        raw = ApiKey.generate()
        obj.set_key(raw)
        obj.created_by = request.user  # the key acts with its creator's role in the organization
        super().save_model(request, obj, form, change)
        messages.warning(request, f"The new API key is {raw} - copy it now: only its hash is stored, "
                                  "and it will not be shown again.")

    @admin.action(description="Revoke the selected keys (and the keys they created)")
    def revoke(self, request, queryset) -> None:
        for api_key in queryset:
            api_key_revoke(api_key=api_key)
        self.message_user(request, f"Revoked {queryset.count()} key(s).")


@admin.register(Quota)
class QuotaAdmin(admin.ModelAdmin):
    list_display = ("organization", "api_key", "requests_per_minute", "tokens_per_minute", "token_budget",
                    "budget_period")
    list_filter = ("organization", "budget_period")


@admin.register(PolicyRule)
class PolicyRuleAdmin(admin.ModelAdmin):
    list_display = ("organization", "block", "timeout_s", "retries", "max_input_tokens", "max_output_tokens")
    list_filter = ("organization",)


@admin.register(OrgModel)
class OrgModelAdmin(admin.ModelAdmin):
    list_display = ("organization", "name", "block")
    list_filter = ("organization",)
    search_fields = ("name",)
