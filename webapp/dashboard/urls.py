from django.contrib.auth import views as auth_views
from django.urls import path

from webapp.dashboard import views
from webapp.login_throttle import throttled_login

urlpatterns = [
    path("", views.blocks, name="dashboard-blocks"),
    path("engines/", views.engines, name="dashboard-engines"),
    path("chat/", views.chat, name="dashboard-chat"),
    path("login/", throttled_login(auth_views.LoginView.as_view()), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
]
