"""The queued path (a block's `backend_config.dispatch: queued`), gateway side: the request goes to a
Celery worker's queue (enqueue.py, queues.py) and its tokens come back over a Redis Stream
(streams.py); `QueuedBackend` (backend.py) puts the two behind the StreamingBackend interface.
What the worker runs is in inference/workers."""
