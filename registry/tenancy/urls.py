from django.urls import path

from registry.tenancy import views

urlpatterns = [
    path("api/keys", views.KeysView.as_view(), name="keys"),
    path("api/keys/<int:pk>", views.KeyDetailView.as_view(), name="key"),
    path("api/keys/<int:pk>/revoke", views.KeyRevokeView.as_view(), name="key-revoke"),
    path("api/orgs/<slug:slug>", views.OrgView.as_view(), name="org"),
    path("api/orgs/<slug:slug>/members", views.OrgMembersView.as_view(), name="org-members"),
    path("api/orgs/<slug:slug>/models", views.OrgModelsView.as_view(), name="org-models"),
    path("api/orgs/<slug:slug>/models/<str:name>", views.OrgModelDetailView.as_view(), name="org-model"),
    path("api/blocks/<path:block_id>/grants", views.BlockGrantsView.as_view(), name="block-grants"),
    path("api/blocks/<path:block_id>/grants/<slug:slug>", views.BlockGrantDetailView.as_view(),
         name="block-grant"),
    path("api/policies", views.PoliciesView.as_view(), name="policies"),
    path("api/policies/<int:pk>", views.PolicyDetailView.as_view(), name="policy"),
    path("api/quotas", views.QuotasView.as_view(), name="quotas"),
    path("api/quotas/<int:pk>", views.QuotaDetailView.as_view(), name="quota"),
    path("api/usage", views.UsageView.as_view(), name="usage"),
    path("api/whoami", views.WhoAmIView.as_view(), name="whoami"),
]
