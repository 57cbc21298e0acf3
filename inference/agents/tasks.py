"""Celery tasks of agents. They take ids; the work is in services.py."""

from __future__ import annotations

from celery import shared_task

from inference.agents import services


@shared_task(name=services.RUN_TASK, ignore_result=True)
def run_agent(run_id: str) -> str:
    return services.agent_run_execute(run_id=run_id)
