import json

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
    # The upstream api_key and credential headers never show in clear here, as in the API: the
    # configuration is shown masked and changed through the dashboard or /api, which keep a masked
    # secret and refuse to move it to another destination (registry.services).
    exclude = ("backend_config",)
    readonly_fields = ("masked_backend_config",)

    @admin.display(description="Backend config (secrets masked)")
    def masked_backend_config(self, block: Block) -> str:
        return json.dumps(block.public_backend_config(), indent=2, sort_keys=True)
