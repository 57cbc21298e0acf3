"""Celery tasks of the inference workers. They take ids; the work is in execution.py."""

from __future__ import annotations

from celery import shared_task
from celery.signals import worker_shutdown
from django.conf import settings

from inference.workers.execution import execute_request
from inference.workers.loop import close_worker_loop, run_on_worker_loop


@shared_task(name="inference.run_request", acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def run_request(request_id: str) -> str:
    # The task thread only waits: the request runs on the process's shared loop with all the others.
    return run_on_worker_loop(execute_request(request_id), timeout=settings.CELERY_TASK_SOFT_TIME_LIMIT)


@worker_shutdown.connect
def _close_loop(**kwargs) -> None:
    close_worker_loop()
