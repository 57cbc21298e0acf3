"""The block create/edit form: plain fields for the common backends, validated by the registry's
own BlockWriteSerializer (the REST API's rules: ids, egress, server code), so the page and the API
never disagree about what a block may hold. Secrets are never sent back to the browser: a stored
api_key shows as "set", and leaving the field blank keeps it (registry.services' `***` rule, which
refuses when the destination changed)."""

from __future__ import annotations

import json
from typing import Any

from django import forms

from registry.models import Block
from registry.serializers import BlockWriteSerializer
from registry.services import MASK

OTHER = "other"
# The backends a tenant configures with plain fields; anything else takes a JSON object.
BACKEND_CHOICES = [
    ("openai", "OpenAI-compatible HTTP API"),
    ("sglang", "SGLang engines (run by inference workers)"),
    ("aios_grpc", "AIOS gRPC server"),
    ("orgllm_grpc", "OrgLLM gRPC server"),
    (OTHER, "Other (configuration as JSON)"),
]
# Form field -> config key, per backend.
BACKEND_FIELDS: dict[str, dict[str, str]] = {
    "openai": {"base_url": "base_url", "api_key": "api_key", "model": "model", "timeout_s": "timeout_s"},
    "sglang": {"timeout_s": "timeout_s"},
    "aios_grpc": {"target": "target", "tls": "tls", "remote_block_id": "block_id", "timeout_s": "timeout_s"},
    "orgllm_grpc": {"target": "target", "tls": "tls", "org_id": "org_id", "model_id": "model_id",
                    "timeout_s": "timeout_s"},
}
# Serializer error keys -> the form field that shows them.
ERROR_FIELDS = {"id": "block_id", "name": "name", "kind": "kind", "visibility": "visibility",
                "enabled": "enabled", "inputProtocols": "input_protocols", "outputProtocols": "output_protocols",
                "blockMetadata": "description"}


def _split(text: str) -> list[str]:
    return [item.strip() for item in text.replace("\n", ",").split(",") if item.strip()]


class BlockForm(forms.Form):
    block_id = forms.CharField(label="ID", max_length=200, help_text="Letters, digits and . _ : @ + -; cannot change later.")
    name = forms.CharField(max_length=200, required=False)
    kind = forms.ChoiceField(choices=Block.KINDS, initial=Block.LLM)
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False, max_length=10_000,
                                  help_text="What the block is good at: search by meaning and the auto planner read this.")
    tags = forms.CharField(required=False, help_text="Comma-separated, e.g. code, chat")
    input_protocols = forms.CharField(required=False, help_text="Comma-separated, e.g. text/plain")
    output_protocols = forms.CharField(required=False, help_text="Comma-separated")
    visibility = forms.ChoiceField(choices=Block.VISIBILITIES, initial=Block.PRIVATE)
    enabled = forms.BooleanField(required=False, initial=True)
    backend_type = forms.ChoiceField(label="Backend", choices=BACKEND_CHOICES, initial="openai")
    base_url = forms.CharField(label="Base URL", required=False, max_length=500,
                               help_text="e.g. https://api.openai.com/v1")
    api_key = forms.CharField(label="API key", required=False, max_length=500,
                              widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}))
    model = forms.CharField(label="Upstream model", required=False, max_length=200)
    target = forms.CharField(label="gRPC target", required=False, max_length=500, help_text="host:port")
    tls = forms.BooleanField(label="Use TLS", required=False)
    remote_block_id = forms.CharField(label="Remote block id", required=False, max_length=200)
    org_id = forms.CharField(label="OrgLLM organization id", required=False, max_length=200)
    model_id = forms.CharField(label="OrgLLM model id", required=False, max_length=200)
    timeout_s = forms.FloatField(label="Timeout (s)", required=False, min_value=0.1, max_value=3600)
    config_json = forms.CharField(label="Backend type and configuration (JSON)", required=False,
                                  widget=forms.Textarea(attrs={"rows": 4, "class": "mono"}),
                                  help_text='For other backends: {"type": "...", "config": {...}}')

    def __init__(self, *args: Any, block: Block | None = None, operator: bool = False, **kwargs: Any):
        self.block = block
        self.operator = operator
        data = args[0] if args else kwargs.get("data")
        if block is not None and data is None and "initial" not in kwargs:
            kwargs["initial"] = self.initial_for(block)
        super().__init__(*args, **kwargs)
        if block is not None:
            self.fields["block_id"].disabled = True
            self.fields["block_id"].required = False
            self.secret_stored = bool((block.backend_config or {}).get("api_key"))
            if self.secret_stored:
                self.fields["api_key"].help_text = "A key is stored; leave blank to keep it."
        else:
            self.secret_stored = False
        for name, field in self.fields.items():
            if field.help_text:
                field.widget.attrs.setdefault("aria-describedby", f"id_{name}_help")

    @staticmethod
    def initial_for(block: Block) -> dict[str, Any]:
        config = block.backend_config or {}
        backend = block.backend_type if block.backend_type in BACKEND_FIELDS else OTHER
        initial: dict[str, Any] = {
            "block_id": block.block_id, "name": block.name, "kind": block.kind, "description": block.description,
            "tags": ", ".join(block.tags or []), "input_protocols": ", ".join(block.input_protocols or []),
            "output_protocols": ", ".join(block.output_protocols or []), "visibility": block.visibility,
            "enabled": block.enabled, "backend_type": backend,
        }
        if backend == OTHER:
            initial["config_json"] = json.dumps({"type": block.backend_type, "config": block.public_backend_config()},
                                                indent=2)
        for field, key in BACKEND_FIELDS.get(backend, {}).items():
            if field != "api_key" and key in config:
                initial[field] = config[key]
        return initial

    def _backend(self, data: dict[str, Any]) -> dict[str, Any]:
        backend = data["backend_type"]
        if backend == OTHER:
            raw = (data.get("config_json") or "").strip()
            if not raw:
                return {"type": "", "config": {}}
            try:
                parsed = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise forms.ValidationError({"config_json": f"not valid JSON ({exc.msg}, line {exc.lineno})"}) from exc
            if not isinstance(parsed, dict) or not isinstance(parsed.get("type", ""), str) \
                    or not isinstance(parsed.get("config", {}), dict):
                raise forms.ValidationError({"config_json": 'expected {"type": "<backend>", "config": {...}}'})
            return {"type": parsed.get("type", ""), "config": parsed.get("config", {})}
        # Keys the form does not show (headers, tokenizer, ...) are kept, masked as the API masks them.
        stored = self.block.public_backend_config() if self.block and self.block.backend_type == backend else {}
        config = {k: v for k, v in stored.items() if k not in BACKEND_FIELDS[backend].values()}
        for field, key in BACKEND_FIELDS[backend].items():
            value = data.get(field)
            if field == "api_key":
                if value:
                    config[key] = value
                elif self.secret_stored:
                    config[key] = MASK
                continue
            if field == "tls":
                if value:
                    config[key] = True
                continue
            if value not in (None, ""):
                config[key] = value
        required = {"openai": ["base_url"], "aios_grpc": ["target"], "orgllm_grpc": ["target"]}.get(backend, [])
        missing = {field: "Required for this backend." for field in required if not data.get(field)}
        if missing:
            raise forms.ValidationError(missing)
        return {"type": backend, "config": config}

    def _backend_field(self, backend: str, message: str) -> str:
        """The form field a backend error belongs on: the plain field for the config key it names,
        else the JSON box (other backends) or the backend choice."""
        if backend == OTHER:
            return "config_json"
        key = _config_key(message)
        for field, config_key in BACKEND_FIELDS.get(backend, {}).items():
            if config_key == key:
                return field
        return "backend_type"

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if self.errors:
            return data
        payload: dict[str, Any] = {
            "id": self.block.block_id if self.block else data.get("block_id", ""),
            "name": data.get("name", ""),
            "kind": data.get("kind"),
            "blockMetadata": {**((self.block.metadata or {}) if self.block else {}),
                              "description": data.get("description", ""), "tags": _split(data.get("tags", ""))},
            "inputProtocols": _split(data.get("input_protocols", "")),
            "outputProtocols": _split(data.get("output_protocols", "")),
            "visibility": data.get("visibility"),
            "enabled": bool(data.get("enabled")),
            "backend": self._backend(data),
        }
        serializer = BlockWriteSerializer(data=payload, context={"operator": self.operator})
        if not serializer.is_valid():
            for key, messages in serializer.errors.items():
                message = _flatten(messages)
                field = ERROR_FIELDS.get(key)
                if key == "backend":
                    field = self._backend_field(data["backend_type"], message)
                self.add_error(field, message)
            return data
        self.validated = serializer.validated_data
        return data


def _config_key(message: str) -> str | None:
    """The config key a backend error names ("backend.config.base_url: ..." -> "base_url")."""
    prefix = "backend.config."
    return message[len(prefix):].split(":", 1)[0].split(".", 1)[0] if message.startswith(prefix) else None


def _flatten(messages: Any) -> str:
    if isinstance(messages, dict):
        return "; ".join(f"{k}: {_flatten(v)}" for k, v in messages.items())
    if isinstance(messages, list):
        return "; ".join(_flatten(m) for m in messages)
    return str(messages)
