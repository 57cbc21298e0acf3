"""Reads of agents and runs, always within one organization (another's are None: a 404)."""

from __future__ import annotations

import uuid

from django.db.models import QuerySet

from inference.agents.models import AgentDefinition, AgentRun, AgentRunEvent
from registry.models import Organization


def agents_of(organization: Organization) -> QuerySet[AgentDefinition]:
    return AgentDefinition.objects.filter(organization=organization)


def agent_get(*, organization: Organization, name: str) -> AgentDefinition | None:
    return AgentDefinition.objects.filter(organization=organization, name=name).first()


def runs_of(*, agent: AgentDefinition) -> QuerySet[AgentRun]:
    return AgentRun.objects.filter(agent=agent).order_by("-created_at")


def run_get(*, organization: Organization, pk: str | uuid.UUID) -> AgentRun | None:
    try:
        pk = uuid.UUID(str(pk))
    except ValueError:
        return None
    return AgentRun.objects.select_related("agent").filter(organization=organization, pk=pk).first()


def events_after(*, run_id: uuid.UUID, seq: int) -> QuerySet[AgentRunEvent]:
    return AgentRunEvent.objects.filter(run_id=run_id, seq__gt=seq).order_by("seq")


def run_finished(run_id: uuid.UUID) -> bool:
    return AgentRun.objects.filter(pk=run_id, state__in=AgentRun.FINISHED).exists()
