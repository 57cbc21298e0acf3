"""Agents as an organization's platform objects: stored definitions (the seed's "Agents DB" with its
"default brain" model) and their runs, recorded with every step, tool call, token count and cost."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

from registry.models import ApiKey, Organization


class AgentDefinition(models.Model):
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="agents")
    name = models.CharField(max_length=64)
    description = models.TextField()
    definition = models.TextField(blank=True, default="")
    signature = models.TextField()
    # The default brain: the block (or "auto", "auto:<tag>") the agent's model calls go to unless a run names another.
    model = models.CharField(max_length=300)
    # temperature, max_tokens, max_steps, max_retries (agent() options).
    options = models.JSONField(default=dict, blank=True)
    # The server's tools it may call: [{"type": "block", "block": ...} | {"type": "agent", "agent": ...}].
    tools = models.JSONField(default=list, blank=True)
    # RLM mode (docs/agents-sandbox.md): {"context_fields": [...], ...}, or null for a plain agent; the
    # Actor's and the Responder's model-call options (temperature, max_tokens, top_p, seed, model).
    rlm = models.JSONField(null=True, blank=True)
    actor_options = models.JSONField(default=dict, blank=True)
    responder_options = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["organization", "name"], name="agent_name_per_org")]
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class AgentRun(models.Model):
    QUEUED, RUNNING, SUCCEEDED, FAILED, STOPPED = "queued", "running", "succeeded", "failed", "stopped"
    STATES = [(s, s) for s in (QUEUED, RUNNING, SUCCEEDED, FAILED, STOPPED)]
    FINISHED = (SUCCEEDED, FAILED, STOPPED)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="agent_runs")
    agent = models.ForeignKey(AgentDefinition, on_delete=models.CASCADE, related_name="runs")
    state = models.CharField(max_length=16, choices=STATES, default=QUEUED)
    model = models.CharField(max_length=300)
    input = models.JSONField(default=dict)
    options = models.JSONField(default=dict, blank=True)
    output = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    # {"prompt_tokens", "completion_tokens", "total_tokens", "calls"} over every model call, child agents' too.
    usage = models.JSONField(default=dict, blank=True)
    # What the run cost in tokens (prompt + completion): the unit quotas count in.
    cost_tokens = models.PositiveBigIntegerField(default=0)
    steps = models.PositiveIntegerField(default=0)
    tool_calls = models.PositiveIntegerField(default=0)
    stop_requested = models.BooleanField(default=False)
    # While running, the executor renews this every WORKFLOW_HEARTBEAT_S (as a workflow node's lease); one
    # that lapsed means its worker died (a crash, a hard time limit, a restart): the sweeper fails the run.
    lease_until = models.DateTimeField(null=True, blank=True)
    # Who started it: the run's model calls act for them (the key's allowed models apply).
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    api_key = models.ForeignKey(ApiKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    via_key = models.BooleanField(default=False)
    dev_mode = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["organization", "-created_at"], name="agent_run_org_created"),
                   models.Index(fields=["state", "lease_until"], name="agent_run_state_lease")]

    def __str__(self) -> str:
        return f"{self.agent_id}:{self.pk}"


class AgentRunEvent(models.Model):
    """One thing a run did, numbered from 1 (the live feed resumes after a number): run.started, step,
    delta (partial outputs, merged over a short interval), tool_call, tool_result, retry, fallback,
    run.finished."""

    run = models.ForeignKey(AgentRun, on_delete=models.CASCADE, related_name="events")
    seq = models.PositiveIntegerField()
    kind = models.CharField(max_length=32)
    data = models.JSONField(default=dict)
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "seq"], name="agent_run_event_seq")]
        ordering = ["run", "seq"]

    def __str__(self) -> str:
        return f"{self.run_id}#{self.seq} {self.kind}"
