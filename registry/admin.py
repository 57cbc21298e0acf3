from django.contrib import admin, messages

from registry.models import ApiKey, Block, BlockGrant, Membership, Organization


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    list_display = ("slug", "name", "created_at")
    search_fields = ("slug", "name")
    inlines = [MembershipInline]


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
        from registry.tenancy.services import api_key_revoke

        for api_key in queryset:
            api_key_revoke(api_key=api_key)
        self.message_user(request, f"Revoked {queryset.count()} key(s).")


class BlockGrantInline(admin.TabularInline):
    model = BlockGrant
    extra = 0


@admin.register(Block)
class BlockAdmin(admin.ModelAdmin):
    list_display = ("block_id", "kind", "name", "organization", "visibility", "backend_type", "enabled")
    list_filter = ("kind", "visibility", "enabled", "backend_type")
    search_fields = ("block_id", "name", "description")
    inlines = [BlockGrantInline]
