"""A ChatRequest and the Principal behind a test party's key, for calling admission in-process."""

from __future__ import annotations

from inference.backends.base import ChatRequest
from registry.models import ApiKey, hash_api_key
from registry.principal import Principal


def chat(model: str, text: str = "hello", **kwargs) -> ChatRequest:
    return ChatRequest(messages=[{"role": "user", "content": text}], model=model, **kwargs)


def principal_of(party) -> Principal:
    key = ApiKey.objects.select_related("organization").get(hashed_key=hash_api_key(party.key))
    return Principal(organization=key.organization, api_key=key)
