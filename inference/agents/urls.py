from django.urls import path

from inference.agents import views

urlpatterns = [
    path("api/agents", views.AgentsView.as_view(), name="agents"),
    path("api/agents/<str:name>", views.AgentDetailView.as_view(), name="agent"),
    path("api/agents/<str:name>/runs", views.AgentRunsView.as_view(), name="agent-runs"),
    path("api/agent-runs/<uuid:pk>", views.RunDetailView.as_view(), name="agent-run"),
    path("api/agent-runs/<uuid:pk>/events", views.RunEventsView.as_view(), name="agent-run-events"),
    path("api/agent-runs/<uuid:pk>/stop", views.RunStopView.as_view(), name="agent-run-stop"),
]
