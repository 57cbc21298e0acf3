"""Workflows and their runs: the durable state machine. Every state lives in these rows; no process
keeps a run in memory and no task waits on an approval.

Transitions are conditional UPDATEs (`... WHERE state = <old>`): whoever changes the row first wins,
so a duplicated Celery delivery, a second decision or a sweeper racing a decision changes nothing.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from registry.models import ApiKey, Organization


class Workflow(models.Model):
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="workflows")
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, default="")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["organization", "name"], name="workflow_name_per_org")]

    def __str__(self) -> str:
        return self.name


class WorkflowVersion(models.Model):
    """One uploaded document, never changed: a run pins the version it started with."""

    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    label = models.CharField(max_length=100)  # the document's own `version`
    document = models.JSONField()
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["workflow", "number"], name="workflow_version_number"),
            models.UniqueConstraint(fields=["workflow", "label"], name="workflow_version_label"),
        ]
        ordering = ["workflow", "number"]

    def __str__(self) -> str:
        return f"{self.workflow_id} v{self.number} ({self.label})"

    def save(self, *args, **kwargs) -> None:
        if self.pk is not None:
            raise ValueError("a workflow version is immutable: upload a new version instead")
        super().save(*args, **kwargs)


class WorkflowRun(models.Model):
    PENDING, RUNNING, SUCCEEDED, FAILED, CANCELLED = "pending", "running", "succeeded", "failed", "cancelled"
    STATES = [(s, s) for s in (PENDING, RUNNING, SUCCEEDED, FAILED, CANCELLED)]
    FINISHED = (SUCCEEDED, FAILED, CANCELLED)

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="workflow_runs")
    version = models.ForeignKey(WorkflowVersion, on_delete=models.PROTECT, related_name="runs")
    state = models.CharField(max_length=16, choices=STATES, default=PENDING)
    input = models.JSONField(default=dict)
    output = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    # Who started it: the run's block calls act with this key's model list and this user's role.
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    api_key = models.ForeignKey(ApiKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # Started through a key: if that key is deleted the run stops rather than run without its limits.
    via_key = models.BooleanField(default=False)
    dev_mode = models.BooleanField(default=False)  # the embedded default's keyless localhost owner
    # The number of the run's last event (events.py): taken with an UPDATE, whose row lock orders writers.
    event_seq = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["organization", "-created_at"], name="workflow_run_org_recent")]

    def __str__(self) -> str:
        return f"run {self.pk} ({self.state})"


class NodeRun(models.Model):
    PENDING, QUEUED, RUNNING, WAITING = "pending", "queued", "running", "waiting"
    SUCCEEDED, FAILED, SKIPPED, CANCELLED = "succeeded", "failed", "skipped", "cancelled"
    STATES = [(s, s) for s in (PENDING, QUEUED, RUNNING, WAITING, SUCCEEDED, FAILED, SKIPPED, CANCELLED)]
    ACTIVE = (PENDING, QUEUED, RUNNING, WAITING)
    DONE = (SUCCEEDED, SKIPPED)  # a parent in these lets its children go
    FINISHED = (SUCCEEDED, FAILED, SKIPPED, CANCELLED)

    run = models.ForeignKey(WorkflowRun, on_delete=models.CASCADE, related_name="nodes")
    node_id = models.CharField(max_length=64)
    node_type = models.CharField(max_length=16)
    state = models.CharField(max_length=16, choices=STATES, default=PENDING)
    input = models.JSONField(null=True, blank=True)
    output = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    attempts = models.PositiveIntegerField(default=0)
    # The executor holding the node, and until when: a worker that dies stops renewing it, and the
    # sweeper gives the node to another.
    claim = models.CharField(max_length=32, blank=True, default="")
    lease_until = models.DateTimeField(null=True, blank=True)
    queued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "node_id"], name="node_run_once_per_run")]
        indexes = [models.Index(fields=["state", "lease_until"], name="node_run_state_lease")]
        ordering = ["run", "pk"]

    def __str__(self) -> str:
        return f"{self.node_id} of run {self.run_id} ({self.state})"


class Approval(models.Model):
    """A human decision on one approval node of one run, or on one chat request the gateway holds
    (a policy's `approval_required`: `request_id` set, no run; holds.py). A node's is made when the
    run starts, so a decision can come before the run reaches the node; `reached_at` says it has."""

    PENDING, APPROVED, REJECTED, CANCELLED = "pending", "approved", "rejected", "cancelled"
    STATES = [(s, s) for s in (PENDING, APPROVED, REJECTED, CANCELLED)]

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="approvals")
    run = models.ForeignKey(WorkflowRun, null=True, blank=True, on_delete=models.CASCADE, related_name="approvals")
    node_id = models.CharField(max_length=64)
    # A held chat request: its x-request-id (GET /v1/requests/<id>) and who sent it.
    request_id = models.CharField(max_length=64, blank=True, default="")
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                     related_name="+")
    requested_by_key = models.ForeignKey(ApiKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    state = models.CharField(max_length=16, choices=STATES, default=PENDING)
    approvers = models.JSONField()
    deadline_s = models.PositiveIntegerField(null=True, blank=True)
    on_timeout = models.JSONField(null=True, blank=True)
    schema = models.JSONField(null=True, blank=True)
    escalated = models.BooleanField(default=False)
    review = models.JSONField(null=True, blank=True)  # what the approvers are shown, set on arrival
    # approve | reject | edit, or timeout-approve | timeout-reject | timeout-default (the sweeper's)
    decision = models.CharField(max_length=20, blank=True, default="")
    output = models.JSONField(null=True, blank=True)  # an edit, or a timeout's default output
    diff = models.JSONField(null=True, blank=True)
    comment = models.TextField(blank=True, default="")
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    decided_by_key = models.ForeignKey(ApiKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    decided_at = models.DateTimeField(null=True, blank=True)
    reached_at = models.DateTimeField(null=True, blank=True)
    due_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["run", "node_id"], name="approval_once_per_node"),
            models.UniqueConstraint(fields=["organization", "request_id"], condition=~models.Q(request_id=""),
                                    name="approval_once_per_request"),
        ]
        indexes = [
            models.Index(fields=["state", "due_at"], name="approval_state_due"),
            models.Index(fields=["organization", "state"], name="approval_org_state"),
        ]
        ordering = ["pk"]

    def __str__(self) -> str:
        if self.request_id:
            return f"approval of request {self.request_id} ({self.state})"
        return f"approval {self.node_id} of run {self.run_id} ({self.state})"


class RunEvent(models.Model):
    """One step of a run, for the live feed (SSE and WebSocket) and its resumption. `seq` counts 1, 2,
    3... per run, and a reader never sees a later number before an earlier one (events.py), so a
    client that saw `seq` N asks for what follows N (SSE's Last-Event-ID) and misses nothing."""

    run = models.ForeignKey(WorkflowRun, on_delete=models.CASCADE, related_name="events")
    seq = models.PositiveIntegerField()
    # run.started, node.started, node.succeeded, node.failed, node.cancelled, node.skipped, node.waiting,
    # node.requeued, approval.escalated, run.finished
    kind = models.CharField(max_length=32)
    node_id = models.CharField(max_length=64, blank=True, default="")
    data = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "seq"], name="run_event_seq")]
        ordering = ["run", "seq"]

    def __str__(self) -> str:
        return f"{self.kind} #{self.seq} of run {self.run_id}"
