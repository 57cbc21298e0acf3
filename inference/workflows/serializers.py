"""Request bodies and the JSON shapes of workflows, versions, runs, nodes and approvals."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from inference.workflows.models import Approval, NodeRun, RunEvent, Workflow, WorkflowRun, WorkflowVersion
from inference.workflows.services import DECISIONS


class RunStartSerializer(serializers.Serializer):
    input = serializers.JSONField(required=False, default=dict)
    version = serializers.IntegerField(required=False, min_value=1, max_value=2**31 - 1)


class DecisionSerializer(serializers.Serializer):
    decision = serializers.ChoiceField(choices=DECISIONS)
    output = serializers.JSONField(required=False, allow_null=True)
    comment = serializers.CharField(required=False, allow_blank=True, max_length=4000, default="")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs["decision"] == "edit" and "output" not in attrs:
            raise serializers.ValidationError({"output": "an edit gives the corrected output"})
        if attrs["decision"] != "edit" and "output" in attrs:
            raise serializers.ValidationError({"output": "only an edit gives an output"})
        return attrs


def _time(value) -> str | None:
    return value.isoformat() if value else None


def version_dict(version: WorkflowVersion) -> dict[str, Any]:
    return {"number": version.number, "version": version.label, "createdAt": _time(version.created_at),
            "document": version.document}


def workflow_dict(workflow: Workflow, *, versions: list[WorkflowVersion] | None = None) -> dict[str, Any]:
    data = {"id": workflow.pk, "name": workflow.name, "description": workflow.description,
            "createdAt": _time(workflow.created_at)}
    if versions is not None:
        data["versions"] = [{"number": v.number, "version": v.label, "createdAt": _time(v.created_at)}
                            for v in versions]
    return data


def node_dict(node: NodeRun) -> dict[str, Any]:
    duration = (node.finished_at - node.started_at).total_seconds() * 1000 \
        if node.finished_at and node.started_at else None
    return {"id": node.node_id, "type": node.node_type, "state": node.state, "input": node.input,
            "output": node.output, "error": node.error or None, "attempts": node.attempts,
            "queuedAt": _time(node.queued_at), "startedAt": _time(node.started_at),
            "finishedAt": _time(node.finished_at), "durationMs": duration}


def run_dict(run: WorkflowRun, *, nodes: list[NodeRun] | None = None,
             approvals: list[Approval] | None = None) -> dict[str, Any]:
    data = {"id": run.pk, "workflow": run.version.workflow_id, "version": run.version.number,
            "versionLabel": run.version.label, "state": run.state, "input": run.input, "output": run.output,
            "error": run.error or None, "createdAt": _time(run.created_at), "finishedAt": _time(run.finished_at)}
    if nodes is not None:
        data["nodes"] = [node_dict(n) for n in nodes]
    if approvals is not None:
        data["approvals"] = [{"id": a.pk, "node": a.node_id, "state": a.state} for a in approvals]
    return data


def approval_dict(approval: Approval) -> dict[str, Any]:
    return {"id": approval.pk, "run": approval.run_id,
            "workflow": approval.run.version.workflow.name if approval.run_id else None,
            # A chat request the gateway holds (policy approval_required): its x-request-id and sender.
            "request": approval.request_id or None,
            "requestedBy": approval.requested_by.get_username() if approval.requested_by_id else None,
            "node": approval.node_id, "state": approval.state, "reached": approval.reached_at is not None,
            "approvers": approval.approvers, "escalated": approval.escalated, "review": approval.review,
            "schema": approval.schema, "dueAt": _time(approval.due_at), "decision": approval.decision or None,
            "decidedBy": approval.decided_by.get_username() if approval.decided_by_id else None,
            "decidedByKey": approval.decided_by_key_id, "decidedAt": _time(approval.decided_at),
            "output": approval.output, "diff": approval.diff, "comment": approval.comment or None,
            "reachedAt": _time(approval.reached_at), "createdAt": _time(approval.created_at)}


def event_dict(event: RunEvent) -> dict[str, Any]:
    return {"seq": event.seq, "type": event.kind, "run": event.run_id, "node": event.node_id or None,
            "at": _time(event.created_at), **event.data}
