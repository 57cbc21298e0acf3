"""Input validation for the planner API (camelCase, as the rest of /api). The caller's organization comes
in the context."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from inference.backends.factory import EMBEDDING_ONLY_BACKENDS
from inference.models import PlannerConfig
from inference.planner.routing import AUTO, AUTO_PREFIX
from registry.envelope import ReferenceNotFound, Unprocessable
from registry.fields import StrictCharField, StrictChoiceField, StrictFloatField, StrictIntegerField
from registry.models import Block
from registry.selectors import block_get_visible

MAX_TASK_CHARS = 8000
MAX_NAMED = 50
REFERENCE = {"max_length": 200, "min_length": 1}


def _llm_block(organization, reference: str, field: str) -> Block:
    """A chat LLM block the organization may see, by id or qualified id; missing is a 404, another kind a 422."""
    block = block_get_visible(organization=organization, block_id=reference)
    if block is None:
        raise ReferenceNotFound({field: [f"unknown block {reference!r}"]})
    if block.kind != Block.LLM or not block.backend_type or block.backend_type in EMBEDDING_ONLY_BACKENDS:
        raise Unprocessable({field: [f"{reference!r} is not an LLM block with a chat backend"]})
    return block


class PlannerConfigSerializer(serializers.Serializer):
    mode = StrictChoiceField(choices=[m for m, _ in PlannerConfig.MODES], required=False)
    plannerBlock = StrictCharField(required=False, allow_null=True, **REFERENCE)  # noqa: N815 (the API's name)
    defaultBlock = StrictCharField(required=False, allow_null=True, **REFERENCE)  # noqa: N815
    minScore = StrictFloatField(required=False, allow_null=True, min_value=-1.0, max_value=1.0)  # noqa: N815
    candidates = StrictIntegerField(required=False, min_value=2, max_value=MAX_NAMED)

    NAMES = {"mode": "mode", "plannerBlock": "planner_block", "defaultBlock": "default_block",
             "minScore": "min_score", "candidates": "candidates"}

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        organization = self.context["organization"]
        values = {}
        for name, value in attrs.items():
            if name in ("plannerBlock", "defaultBlock") and value is not None:
                value = _llm_block(organization, value, name)
            values[self.NAMES[name]] = value
        return values


class SchemaDescriptionSerializer(serializers.Serializer):
    name = StrictCharField(max_length=200)
    description = StrictCharField(max_length=2000, required=False, allow_blank=True)
    schema = serializers.JSONField(required=False, allow_null=True)


class PlannerSelectSerializer(serializers.Serializer):
    task = StrictCharField(max_length=MAX_TASK_CHARS, min_length=1)
    kind = StrictChoiceField(choices=[Block.LLM, Block.OPTIMIZER], required=False, default=Block.LLM)
    candidates = serializers.ListField(child=StrictCharField(**REFERENCE), required=False, min_length=1,
                                       max_length=MAX_NAMED)
    planner = StrictCharField(required=False, **REFERENCE)
    metadata = serializers.DictField(required=False, default=dict)
    schemas = SchemaDescriptionSerializer(many=True, required=False, max_length=20)
    limit = StrictIntegerField(required=False, min_value=1, max_value=MAX_NAMED, default=8)


class PlannerExplainSerializer(serializers.Serializer):
    """A chat body as /v1/chat/completions takes it; `model` "auto" (the default) or "auto:<tag>"."""

    model = StrictCharField(required=False, default=AUTO)
    # Each message is checked as /v1/chat/completions checks it (inference/gateway/validation.py).
    messages = serializers.ListField(min_length=1)

    def validate_model(self, value: str) -> str:
        if value != AUTO and not (value.startswith(AUTO_PREFIX) and value[len(AUTO_PREFIX):].strip()):
            raise serializers.ValidationError(f"must be '{AUTO}' or '{AUTO_PREFIX}<tag>'")
        return value
