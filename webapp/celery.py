"""The Celery app. Queues: `inference.gpu.<node>` (one per GPU node), `inference.cpu`, `default`.

Model work goes to the worker that owns the model's engine; see inference/workers/README.md
for why inference workers run the threads pool with one shared asyncio loop.
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")

app = Celery("switchboard")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_routes = ("inference.backends.queued.queues.route_task",)
app.autodiscover_tasks()
app.autodiscover_tasks(["inference.workers"])
