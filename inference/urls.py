from django.urls import path

from inference import engine_views, views
from registry import converters

assert converters.BlockRefConverter  # registers <blockref:...>

urlpatterns: list = [
    path("api/blocks/<blockref:block_id>/metrics", views.block_metrics, name="block-metrics"),
    path("api/engines", engine_views.engine_list, name="engine-list"),
    path("discovery/estimate", views.EstimateView.as_view(), name="discovery-estimate"),
    path("discovery/check_execute", views.CheckExecuteView.as_view(), name="discovery-check-execute"),
]
