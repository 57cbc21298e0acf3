"""Delete request log rows older than REQUEST_LOG_RETENTION_DAYS (the gateway also does it hourly;
run this from cron where no gateway runs for long)."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand

from inference.request_log import request_log_prune


class Command(BaseCommand):
    help = "Delete request log rows older than REQUEST_LOG_RETENTION_DAYS."

    def handle(self, *args, **options) -> None:
        deleted = request_log_prune()
        self.stdout.write(f"deleted {deleted} request log rows older than {settings.REQUEST_LOG_RETENTION_DAYS} days")
