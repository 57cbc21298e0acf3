from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from webapp import views
from webapp.login_throttle import throttled_login

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    # The admin's own login, wrapped: same route, so reverse("admin:login") still lands here.
    path("admin/login/", throttled_login(admin.site.login)),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    # Tenancy serves /api/keys, /api/policies, ...; registry.urls the rest of /api; inference /discovery/*.
    path("", include("registry.tenancy.urls")),
    path("api/", include("registry.urls")),
    path("", include("inference.urls")),
    path("", include("inference.workflows.urls")),
    path("", include("inference.agents.urls")),
    path("", include("inference.context_window.urls")),
    path("", include("webapp.dashboard.urls")),
]

handler400 = "webapp.views.bad_request"
handler403 = "webapp.views.permission_denied"
handler404 = "webapp.views.page_not_found"
handler500 = "webapp.views.server_error"
