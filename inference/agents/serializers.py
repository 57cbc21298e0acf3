"""Request bodies and the JSON shapes of agents, runs and run events."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from inference.agents.models import AgentDefinition, AgentRun, AgentRunEvent
from inference.runtime.operators import OPERATORS

NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_-]{4,63}$"


class ToolSerializer(serializers.Serializer):
    """One of the server's tools: {"type": "operator", "operator": <a runtime operator>, "name"?,
    "description"?}, {"type": "block", "block": ..., "name"?, "description"?} or {"type": "agent", "agent":
    ...} (any other combination is a 422)."""

    type = serializers.ChoiceField(choices=["operator", "block", "agent"])
    operator = serializers.ChoiceField(choices=sorted(OPERATORS), required=False)
    block = serializers.CharField(max_length=300, required=False)
    agent = serializers.RegexField(NAME_PATTERN, required=False)
    name = serializers.RegexField(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$", required=False)
    description = serializers.CharField(max_length=1000, required=False)



OPTIONS_SCHEMA = {
    "type": "object", "additionalProperties": False,
    "properties": {"temperature": {"type": "number", "minimum": 0, "maximum": 2},
                   "max_tokens": {"type": "integer", "minimum": 1, "maximum": 2**31 - 1},
                   "max_steps": {"type": "integer", "minimum": 1, "maximum": 50},
                   "max_retries": {"type": "integer", "minimum": 0, "maximum": 10},
                   "native_tools": {"type": "boolean"}, "json_output": {"type": "boolean"}},
}


class _Closed(serializers.Serializer):
    """A serializer that refuses keys it does not know (DRF ignores them by default)."""

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if isinstance(data, dict) and (unknown := set(data) - set(self.fields)):
            raise serializers.ValidationError({k: "unknown option" for k in sorted(unknown)})
        return super().to_internal_value(data)


# The schema says what the serializer checks, unknown keys included (drf-spectacular cannot say that itself).
@extend_schema_field(OPTIONS_SCHEMA)
class OptionsSerializer(_Closed):
    temperature = serializers.FloatField(min_value=0, max_value=2, required=False)
    max_tokens = serializers.IntegerField(min_value=1, max_value=2**31 - 1, required=False)
    max_steps = serializers.IntegerField(min_value=1, max_value=50, required=False)
    max_retries = serializers.IntegerField(min_value=0, max_value=10, required=False)
    native_tools = serializers.BooleanField(required=False)
    json_output = serializers.BooleanField(required=False)


# RLM mode's options a stored definition may set (docs/agents-sandbox.md); the server bounds each one so a
# tenant's agent cannot hold a sandbox or the model pool for long. actor_callback and sandbox limits are the server's.
RLM_LIMITS = {"max_turns": 50, "max_llm_calls": 500, "max_runtime_chars": 100_000,
              "max_batched_llm_query_concurrency": 32}
FIELD_NAME = {"type": "string", "minLength": 1, "maxLength": 64}
RLM_SCHEMA = {
    "type": "object", "nullable": True, "additionalProperties": False, "required": ["context_fields"],
    "properties": {"context_fields": {"type": "array", "items": FIELD_NAME, "minItems": 1, "maxItems": 32},
                   "actor_fields": {"type": "array", "items": FIELD_NAME, "maxItems": 32},
                   "sub_model": {"type": "string", "minLength": 1, "maxLength": 300},
                   **{k: {"type": "integer", "minimum": 1, "maximum": v} for k, v in RLM_LIMITS.items()}},
}
STAGE_OPTIONS_SCHEMA = {
    "type": "object", "additionalProperties": False,
    "properties": {"model": {"type": "string", "minLength": 1, "maxLength": 300},
                   "temperature": {"type": "number", "minimum": 0, "maximum": 2},
                   "max_tokens": {"type": "integer", "minimum": 1, "maximum": 2**31 - 1},
                   "top_p": {"type": "number", "minimum": 0, "maximum": 1},
                   "seed": {"type": "integer", "minimum": -(2**63), "maximum": 2**63 - 1}},
}


@extend_schema_field(RLM_SCHEMA)
class RLMSerializer(_Closed):
    """`rlm`: RLM mode's options (the context fields read in a sandbox instead of the prompt)."""

    context_fields = serializers.ListField(child=serializers.CharField(max_length=64), min_length=1, max_length=32)
    actor_fields = serializers.ListField(child=serializers.CharField(max_length=64), max_length=32, required=False)
    sub_model = serializers.CharField(max_length=300, required=False)
    max_turns = serializers.IntegerField(min_value=1, max_value=RLM_LIMITS["max_turns"], required=False)
    max_llm_calls = serializers.IntegerField(min_value=1, max_value=RLM_LIMITS["max_llm_calls"], required=False)
    max_runtime_chars = serializers.IntegerField(min_value=1, max_value=RLM_LIMITS["max_runtime_chars"],
                                                 required=False)
    max_batched_llm_query_concurrency = serializers.IntegerField(
        min_value=1, max_value=RLM_LIMITS["max_batched_llm_query_concurrency"], required=False)


@extend_schema_field(STAGE_OPTIONS_SCHEMA)
class StageOptionsSerializer(_Closed):
    """actor_options / responder_options: the model-call options of RLM mode's Actor or Responder."""

    model = serializers.CharField(max_length=300, required=False)
    temperature = serializers.FloatField(min_value=0, max_value=2, required=False)
    max_tokens = serializers.IntegerField(min_value=1, max_value=2**31 - 1, required=False)
    top_p = serializers.FloatField(min_value=0, max_value=1, required=False)
    seed = serializers.IntegerField(min_value=-(2**63), max_value=2**63 - 1, required=False)


class AgentWriteSerializer(serializers.Serializer):
    name = serializers.RegexField(NAME_PATTERN)
    description = serializers.CharField(min_length=20, max_length=4000)
    definition = serializers.CharField(min_length=100, max_length=20000, required=False)
    signature = serializers.CharField(max_length=4000,
                                      help_text="ax's string form, e.g. 'question:string -> answer:string' "
                                                "(a signature that does not parse is a 422 naming the position)")
    model = serializers.CharField(max_length=300, help_text='the default brain: a block, or "auto" / "auto:<tag>"')
    options = OptionsSerializer(required=False)
    tools = ToolSerializer(many=True, required=False, help_text="at most 32 (more is a 422)")
    rlm = RLMSerializer(required=False, allow_null=True,
                        help_text="RLM mode: context fields must be inputs and actor fields outputs (else a 422)")
    actor_options = StageOptionsSerializer(required=False, help_text="RLM mode's Actor calls (needs rlm)")
    responder_options = StageOptionsSerializer(required=False, help_text="RLM mode's Responder calls (needs rlm)")


class AgentUpdateSerializer(AgentWriteSerializer):
    name = None


class AgentRunStartSerializer(serializers.Serializer):
    input = serializers.DictField(help_text="the signature's input fields")
    model = serializers.CharField(max_length=300, required=False, help_text="instead of the agent's default brain")
    options = OptionsSerializer(required=False)


def _time(value) -> str | None:
    return value.isoformat() if value else None


def agent_dict(agent: AgentDefinition) -> dict[str, Any]:
    return {"name": agent.name, "description": agent.description, "definition": agent.definition,
            "signature": agent.signature, "model": agent.model, "options": agent.options, "tools": agent.tools,
            "rlm": agent.rlm, "actor_options": agent.actor_options, "responder_options": agent.responder_options,
            "createdAt": _time(agent.created_at), "updatedAt": _time(agent.updated_at)}


def event_dict(event: AgentRunEvent) -> dict[str, Any]:
    return {"seq": event.seq, "type": event.kind, "run": str(event.run_id), "at": _time(event.at), **event.data}


def run_dict(run: AgentRun, *, events: list[AgentRunEvent] | None = None) -> dict[str, Any]:
    data = {"id": str(run.pk), "agent": run.agent.name, "state": run.state, "model": run.model, "input": run.input,
            "options": run.options, "output": run.output, "error": run.error, "usage": run.usage,
            "costTokens": run.cost_tokens, "steps": run.steps, "toolCalls": run.tool_calls,
            "stopRequested": run.stop_requested, "createdAt": _time(run.created_at),
            "startedAt": _time(run.started_at), "finishedAt": _time(run.finished_at)}
    if events is not None:
        data["events"] = [event_dict(e) for e in events if e.kind != "delta"]
    return data
