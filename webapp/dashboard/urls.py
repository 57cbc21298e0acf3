from django.contrib.auth import views as auth_views
from django.urls import path

from registry import converters
from webapp.dashboard import approvals_views, metrics_views, request_log_views, views, workflow_views
from webapp.login_throttle import throttled_login

assert converters.BlockRefConverter  # registers <blockref:...>

urlpatterns = [
    path("", views.blocks, name="dashboard-blocks"),
    path("engines/", views.engines, name="dashboard-engines"),
    path("chat/", views.chat, name="dashboard-chat"),
    path("usage/", metrics_views.organization_metrics, name="dashboard-metrics"),
    path("usage/blocks/<blockref:block_id>/", metrics_views.block_metrics, name="dashboard-block-metrics"),
    path("logs/", request_log_views.request_log, name="dashboard-request-log"),
    path("logs/settings", request_log_views.request_log_settings, name="dashboard-request-log-settings"),
    path("logs/<int:pk>/", request_log_views.request_log_entry, name="dashboard-request-log-entry"),
    path("approvals/", approvals_views.approvals, name="dashboard-approvals"),
    path("approvals/<int:pk>/", approvals_views.approval_detail, name="dashboard-approval"),
    path("workflows/", workflow_views.workflows, name="dashboard-workflows"),
    path("workflows/<int:pk>/", workflow_views.workflow_detail, name="dashboard-workflow"),
    path("workflows/runs/<int:pk>/", workflow_views.run_detail, name="dashboard-workflow-run"),
    path("workflows/runs/<int:pk>/cancel", workflow_views.run_cancel, name="dashboard-workflow-run-cancel"),
    path("login/", throttled_login(auth_views.LoginView.as_view()), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
]
