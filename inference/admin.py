from django.contrib import admin

from inference.models import BlockMetricBucket, Engine


@admin.register(Engine)
class EngineAdmin(admin.ModelAdmin):
    list_display = ("block", "node", "gpu", "endpoint", "state", "load", "restarts", "last_heartbeat")
    list_filter = ("state", "node")


@admin.register(BlockMetricBucket)
class BlockMetricBucketAdmin(admin.ModelAdmin):
    list_display = ("block", "minute", "requests", "errors", "tokens_in", "tokens_out")
    list_filter = ("block",)
