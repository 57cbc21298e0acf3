"""ASGI routes of every client-facing transport: the /v1 HTTP consumers (chat and text completions,
models, the queued requests' resume and cancel, the runtime) and the WebSockets (chat, runtime, run events)."""

from django.urls import path, re_path

from inference.agents.consumers import AgentRunEventsSocket
from inference.gateway.consumers import (
    ChatCompletionsConsumer,
    CompletionsConsumer,
    EmbeddingsConsumer,
    ModelsConsumer,
    NotFoundConsumer,
)
from inference.gateway.request_consumers import CancelConsumer, ResumeConsumer
from inference.gateway.websocket_consumers import ChatSocketConsumer
from inference.runtime.consumers import RuntimeConsumer, RuntimeSocketConsumer
from inference.workflows.consumers import RunEventsSocket

http_urlpatterns: list = [
    path("v1/chat/completions", ChatCompletionsConsumer.as_asgi()),
    path("v1/completions", CompletionsConsumer.as_asgi()),
    path("v1/embeddings", EmbeddingsConsumer.as_asgi()),
    path("v1/models", ModelsConsumer.as_asgi()),
    path("v1/models/<path:model>", ModelsConsumer.as_asgi()),
    # Queued requests (inference/backends/queued): resume a token stream, cancel a request.
    re_path(r"^v1/requests/(?P<request_id>[^/]+)/stream$", ResumeConsumer.as_asgi()),
    re_path(r"^v1/requests/(?P<request_id>[^/]+)/cancel$", CancelConsumer.as_asgi()),
    # The low-level Runtime (inference/runtime): one request per POST; the socket below streams.
    path("v1/runtime", RuntimeConsumer.as_asgi()),
    # Last: any other /v1 path is an OpenAI-shaped 404, never Django's HTML one.
    re_path(r"^v1/", NotFoundConsumer.as_asgi()),
]
websocket_urlpatterns: list = [
    path("ws/chat/", ChatSocketConsumer.as_asgi()),
    path("ws/runtime/", RuntimeSocketConsumer.as_asgi()),
    path("ws/workflow-runs/<int:pk>/events", RunEventsSocket.as_asgi()),
    path("ws/agent-runs/<uuid:pk>/events", AgentRunEventsSocket.as_asgi()),
]
