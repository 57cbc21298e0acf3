from django.urls import path

from inference import views
from inference.workers import views as worker_views

urlpatterns: list = [
    path("api/blocks/<str:block_id>/metrics", views.block_metrics, name="block-metrics"),
    path("api/engines", worker_views.engine_list, name="engine-list"),
]
