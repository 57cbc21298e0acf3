"""`manage.py workflows_sweeper [--once]`: the sweeper without Celery beat (approval deadlines, lost
workflow nodes, agent runs whose executor died). Production schedules the same function with beat
(settings.CELERY_BEAT_SCHEDULE)."""

from __future__ import annotations

import time

from django.conf import settings
from django.core.management.base import BaseCommand

from inference.workflows.services import sweep_all


class Command(BaseCommand):
    help = ("Fire due approval deadlines, re-dispatch lost workflow nodes and fail agent runs whose executor "
            "died, every WORKFLOW_SWEEP_INTERVAL_S.")

    def add_arguments(self, parser) -> None:
        parser.add_argument("--once", action="store_true", help="sweep once and exit")

    def handle(self, *args, once: bool = False, **options) -> None:
        while True:
            counts = sweep_all()
            self.stdout.write(" ".join(f"{k}={v}" for k, v in counts.items()))
            if once:
                return
            time.sleep(settings.WORKFLOW_SWEEP_INTERVAL_S)
