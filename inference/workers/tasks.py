"""Celery tasks of the inference workers. They take ids; the work is in execution.py."""

from __future__ import annotations

from celery import shared_task
from celery.signals import worker_shutdown
from django.conf import settings

from inference.workers.execution import execute_requests
from inference.workers.loop import close_worker_loop, run_on_worker_loop


@shared_task(name="inference.run_requests", acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def run_requests(request_ids: list[str]) -> list[str]:
    # The task thread only waits: the requests run on the process's shared loop with all the others.
    return run_on_worker_loop(execute_requests(request_ids), timeout=settings.CELERY_TASK_SOFT_TIME_LIMIT)


@worker_shutdown.connect
def _close_loop(**kwargs) -> None:
    close_worker_loop()
