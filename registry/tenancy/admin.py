from django.contrib import admin

from registry.tenancy.models import OrgModel, PolicyRule, Quota


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
