from django.contrib import admin

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
    list_display = ("name", "prefix", "organization", "created_at", "expires_at", "revoked_at")
    list_filter = ("organization",)
    readonly_fields = ("prefix", "hashed_key", "last_used_at", "created_at")


class BlockGrantInline(admin.TabularInline):
    model = BlockGrant
    extra = 0


@admin.register(Block)
class BlockAdmin(admin.ModelAdmin):
    list_display = ("block_id", "kind", "name", "organization", "visibility", "backend_type", "enabled")
    list_filter = ("kind", "visibility", "enabled", "backend_type")
    search_fields = ("block_id", "name", "description")
    inlines = [BlockGrantInline]
