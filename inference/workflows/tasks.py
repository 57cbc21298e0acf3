"""Celery tasks of workflows. They take ids; the work is in services.py."""

from __future__ import annotations

from celery import shared_task

from inference.workflows import services


# acks_late + reject_on_worker_lost: a worker killed mid-node gets the message re-delivered, and the
# claim (a lease the dead worker no longer renews) lets the new delivery run it; a finished node never
# runs again because its state is no longer claimable.
@shared_task(name=services.RUN_NODE_TASK, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def run_node(node_run_id: int) -> str:
    return services.node_run_chain(node_run_id=node_run_id)


# Beat's periodic sweep: the workflows' deadlines and lost nodes, and agent runs whose executor died.
@shared_task(name="workflows.sweep", ignore_result=True)
def sweep() -> dict[str, int]:
    return services.sweep_all()
