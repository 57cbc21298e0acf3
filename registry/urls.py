from django.urls import path

from registry import converters, views

assert converters.BlockRefConverter  # registers <blockref:...>

urlpatterns = [
    path("blocks", views.BlockListView.as_view(), name="block-list"),
    # Before the detail route: "query" and "similarity" are reserved block ids.
    path("blocks/query", views.BlockQueryView.as_view(), name="block-query"),
    path("blocks/similarity", views.BlockSimilarityView.as_view(), name="block-similarity"),
    # An own or platform id, or a qualified id "<org-slug>/<block-id>" (reads only, for a foreign block).
    path("blocks/<blockref:block_id>", views.BlockDetailView.as_view(), name="block-detail"),
]
