from django.contrib import admin

from inference.models import BlockMetricBucket, Engine, PlannerConfig


@admin.register(Engine)
class EngineAdmin(admin.ModelAdmin):
    list_display = ("block", "node", "gpu", "endpoint", "state", "load", "restarts", "last_heartbeat")
    list_filter = ("state", "node")


@admin.register(BlockMetricBucket)
class BlockMetricBucketAdmin(admin.ModelAdmin):
    list_display = ("block", "minute", "requests", "errors", "tokens_in", "tokens_out")
    list_filter = ("block",)


@admin.register(PlannerConfig)
class PlannerConfigAdmin(admin.ModelAdmin):
    list_display = ("organization", "mode", "planner_block", "default_block", "min_score", "updated_at")
    list_filter = ("mode",)
    raw_id_fields = ("planner_block", "default_block")
