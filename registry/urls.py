from django.urls import path

from registry import views

urlpatterns = [
    path("blocks", views.BlockListView.as_view(), name="block-list"),
    # Before the detail route: "query" and "similarity" are reserved block ids.
    path("blocks/query", views.BlockQueryView.as_view(), name="block-query"),
    path("blocks/similarity", views.BlockSimilarityView.as_view(), name="block-similarity"),
    path("blocks/<str:block_id>", views.BlockDetailView.as_view(), name="block-detail"),
]
