"""Reads for workflows, always within the caller's organization: another organization's workflow,
run or approval is indistinguishable from a missing one."""

from __future__ import annotations

from django.db.models import QuerySet

from inference.workflows.models import Approval, NodeRun, RunEvent, Workflow, WorkflowRun
from registry.models import Organization


def workflows_of(organization: Organization) -> QuerySet[Workflow]:
    return Workflow.objects.filter(organization=organization).order_by("name")


def workflow_get(*, organization: Organization, pk: int) -> Workflow | None:
    return workflows_of(organization).filter(pk=pk).first()


def run_get(*, organization: Organization, pk: int) -> WorkflowRun | None:
    return (WorkflowRun.objects.filter(organization=organization, pk=pk)
            .select_related("version__workflow", "created_by").first())


def runs_of(*, workflow: Workflow) -> QuerySet[WorkflowRun]:
    return WorkflowRun.objects.filter(version__workflow=workflow).select_related("version").order_by("-pk")


def nodes_of(run: WorkflowRun) -> QuerySet[NodeRun]:
    return NodeRun.objects.filter(run=run).order_by("pk")


def approvals_of(*, organization: Organization, state: str | None = None) -> QuerySet[Approval]:
    approvals = Approval.objects.filter(organization=organization).select_related("decided_by", "requested_by",
                                                                                  "run__version__workflow")
    return approvals.filter(state=state) if state else approvals


def approval_get(*, organization: Organization, pk: int) -> Approval | None:
    return approvals_of(organization=organization).filter(pk=pk).first()


def events_after(*, run_id: int, seq: int, limit: int = 500) -> list[RunEvent]:
    """A run's events numbered after `seq`, in order (events.py: no later number shows before an earlier)."""
    return list(RunEvent.objects.filter(run_id=run_id, seq__gt=seq).order_by("seq")[:limit])


def run_finished(run_id: int) -> bool:
    return WorkflowRun.objects.filter(pk=run_id, state__in=WorkflowRun.FINISHED).exists()
