from django.contrib.auth import views as auth_views
from django.urls import path

from webapp.dashboard import views

urlpatterns = [
    path("", views.blocks, name="dashboard-blocks"),
    path("engines/", views.engines, name="dashboard-engines"),
    path("chat/", views.chat, name="dashboard-chat"),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
]
