from django.urls import path

from inference.context_window import views

urlpatterns = [
    path("api/sessions", views.SessionsView.as_view(), name="sessions"),
    path("api/sessions/<str:session_id>", views.SessionDetailView.as_view(), name="session"),
    path("api/sessions/<str:session_id>/messages", views.SessionMessagesView.as_view(), name="session-messages"),
    path("api/sessions/<str:session_id>/trim", views.SessionTrimView.as_view(), name="session-trim"),
]
