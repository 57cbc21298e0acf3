from django.urls import path

from inference import engine_views, prometheus, views
from inference.planner import views as planner_views
from registry import converters

assert converters.BlockRefConverter  # registers <blockref:...>

urlpatterns: list = [
    # The operator's Prometheus scrape (METRICS_TOKEN / METRICS_ALLOW_NETWORKS; 404 when neither is set).
    path("metrics", prometheus.prometheus_metrics, name="prometheus-metrics"),
    path("api/blocks/<blockref:block_id>/metrics", views.block_metrics, name="block-metrics"),
    path("api/engines", engine_views.engine_list, name="engine-list"),
    path("api/planner/config", planner_views.PlannerConfigView.as_view(), name="planner-config"),
    path("api/planner/select", planner_views.PlannerSelectView.as_view(), name="planner-select"),
    path("api/planner/explain", planner_views.PlannerExplainView.as_view(), name="planner-explain"),
    path("discovery/estimate", views.EstimateView.as_view(), name="discovery-estimate"),
    path("discovery/check_execute", views.CheckExecuteView.as_view(), name="discovery-check-execute"),
]
