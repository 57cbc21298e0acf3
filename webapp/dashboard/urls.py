from django.contrib.auth import views as auth_views
from django.urls import path

from registry import converters
from webapp.dashboard import (
    approvals_views,
    metrics_views,
    org_views,
    registry_views,
    request_log_views,
    views,
    workflow_views,
)
from webapp.login_throttle import throttled_login

assert converters.BlockRefConverter  # registers <blockref:...>

urlpatterns = [
    path("", registry_views.blocks, name="dashboard-blocks"),
    path("blocks/new/", registry_views.block_create, name="dashboard-block-create"),
    path("blocks/search/", registry_views.block_search, name="dashboard-block-search"),
    path("blocks/<int:pk>/", registry_views.block_detail, name="dashboard-block"),
    path("blocks/<int:pk>/edit/", registry_views.block_edit, name="dashboard-block-edit"),
    path("blocks/<int:pk>/delete/", registry_views.block_delete, name="dashboard-block-delete"),
    path("org/", org_views.members, name="dashboard-members"),
    path("org/members/<int:pk>/role/", org_views.member_role, name="dashboard-member-role"),
    path("org/members/<int:pk>/remove/", org_views.member_remove, name="dashboard-member-remove"),
    path("org/keys/", org_views.keys, name="dashboard-keys"),
    path("org/keys/<int:pk>/revoke/", org_views.key_revoke, name="dashboard-key-revoke"),
    path("org/quotas/", org_views.quotas, name="dashboard-quotas"),
    path("org/quotas/<int:pk>/delete/", org_views.quota_delete, name="dashboard-quota-delete"),
    path("org/policies/", org_views.policies, name="dashboard-policies"),
    path("org/policies/<int:pk>/delete/", org_views.policy_delete, name="dashboard-policy-delete"),
    path("org/grants/", org_views.grants, name="dashboard-grants"),
    path("org/grants/<int:pk>/delete/", org_views.grant_delete, name="dashboard-grant-delete"),
    path("engines/", views.engines, name="dashboard-engines"),
    path("chat/", views.chat, name="dashboard-chat"),
    path("usage/", metrics_views.organization_metrics, name="dashboard-metrics"),
    path("usage/blocks/<blockref:block_id>/", metrics_views.block_metrics, name="dashboard-block-metrics"),
    path("logs/", request_log_views.request_log, name="dashboard-request-log"),
    path("logs/settings", request_log_views.request_log_settings, name="dashboard-request-log-settings"),
    path("logs/<int:pk>/", request_log_views.request_log_entry, name="dashboard-request-log-entry"),
    path("approvals/", approvals_views.approvals, name="dashboard-approvals"),
    path("approvals/feed", approvals_views.approvals_feed, name="dashboard-approvals-feed"),
    path("approvals/<int:pk>/", approvals_views.approval_detail, name="dashboard-approval"),
    path("workflows/", workflow_views.workflows, name="dashboard-workflows"),
    path("workflows/<int:pk>/", workflow_views.workflow_detail, name="dashboard-workflow"),
    path("workflows/runs/<int:pk>/", workflow_views.run_detail, name="dashboard-workflow-run"),
    path("workflows/runs/<int:pk>/cancel", workflow_views.run_cancel, name="dashboard-workflow-run-cancel"),
    path("login/", throttled_login(auth_views.LoginView.as_view()), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
]
