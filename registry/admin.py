from django.contrib import admin

from registry.models import Block, BlockGrant, Membership, Organization


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    list_display = ("slug", "name", "created_at")
    search_fields = ("slug", "name")
    inlines = [MembershipInline]


class BlockGrantInline(admin.TabularInline):
    model = BlockGrant
    extra = 0


@admin.register(Block)
class BlockAdmin(admin.ModelAdmin):
    list_display = ("block_id", "kind", "name", "organization", "visibility", "backend_type", "enabled")
    list_filter = ("kind", "visibility", "enabled", "backend_type")
    search_fields = ("block_id", "name", "description")
    inlines = [BlockGrantInline]
