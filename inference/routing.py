"""ASGI routes of the inference app: the /v1 gateway (plain HTTP consumers) and WebSocket chat."""

from django.urls import path, re_path

from inference.consumers import ChatSocketConsumer
from inference.gateway.consumers import (
    ChatCompletionsConsumer,
    CompletionsConsumer,
    EmbeddingsConsumer,
    ModelsConsumer,
    NotFoundConsumer,
)
from inference.workers.consumers import CancelConsumer, ResumeConsumer
from inference.workflows.consumers import RunEventsSocket

http_urlpatterns: list = [
    path("v1/chat/completions", ChatCompletionsConsumer.as_asgi()),
    path("v1/completions", CompletionsConsumer.as_asgi()),
    path("v1/embeddings", EmbeddingsConsumer.as_asgi()),
    path("v1/models", ModelsConsumer.as_asgi()),
    path("v1/models/<path:model>", ModelsConsumer.as_asgi()),
    # Queued requests (inference/workers): resume a token stream, cancel a request.
    re_path(r"^v1/requests/(?P<request_id>[^/]+)/stream$", ResumeConsumer.as_asgi()),
    re_path(r"^v1/requests/(?P<request_id>[^/]+)/cancel$", CancelConsumer.as_asgi()),
    # Last: any other /v1 path is an OpenAI-shaped 404, never Django's HTML one.
    re_path(r"^v1/", NotFoundConsumer.as_asgi()),
]
websocket_urlpatterns: list = [
    path("ws/chat/", ChatSocketConsumer.as_asgi()),
    path("ws/workflow-runs/<int:pk>/events", RunEventsSocket.as_asgi()),
]
