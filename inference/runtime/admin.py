from django.contrib import admin

from inference.runtime.models import Component, RuntimeAccess


@admin.register(RuntimeAccess)
class RuntimeAccessAdmin(admin.ModelAdmin):
    list_display = ("organization", "http_request")


@admin.register(Component)
class ComponentAdmin(admin.ModelAdmin):
    list_display = ("organization", "name", "type", "created_at")
    list_filter = ("type",)
    readonly_fields = ("organization", "name", "type", "attrs", "created_by", "created_at")
