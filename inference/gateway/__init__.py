"""Every client-facing transport: the /v1 HTTP consumers (consumers.py), the queued requests' resume
and cancel (request_consumers.py), the WebSocket chat (websocket_consumers.py), their routes
(routing.py), request validation and the call pipeline they share."""
