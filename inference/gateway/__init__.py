"""The OpenAI-compatible front door: /v1 consumers, request validation, the call pipeline."""
