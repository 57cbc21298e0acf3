from django.urls import path

from inference.workflows import views

urlpatterns = [
    path("api/workflows", views.WorkflowsView.as_view(), name="workflows"),
    path("api/workflows/<int:pk>", views.WorkflowDetailView.as_view(), name="workflow"),
    path("api/workflows/<int:pk>/versions/<int:number>", views.WorkflowVersionView.as_view(), name="workflow-version"),
    path("api/workflows/<int:pk>/runs", views.WorkflowRunsView.as_view(), name="workflow-runs"),
    path("api/workflow-runs/<int:pk>", views.RunDetailView.as_view(), name="workflow-run"),
    path("api/workflow-runs/<int:pk>/events", views.RunEventsView.as_view(), name="workflow-run-events"),
    path("api/workflow-runs/<int:pk>/cancel", views.RunCancelView.as_view(), name="workflow-run-cancel"),
    path("api/approvals", views.ApprovalsView.as_view(), name="approvals"),
    path("api/approvals/<int:pk>", views.ApprovalDetailView.as_view(), name="approval"),
    path("api/approvals/<int:pk>/decision", views.ApprovalDecisionView.as_view(), name="approval-decision"),
]
