"""Semantic similarity search over blocks (issue 10): embeddings kept current off the request path,
vector search in the database (pgvector where available, an exact scan elsewhere), and the named
ranking policies. Reference: docs/registry-api.md (the API), docs/planning.md (choices and figures).

Importing this package imports the models: use it from code that runs after Django is set up.
"""

from registry.similarity.policies import DEFAULT_POLICY, POLICIES, SimilarityHit, policy_names
from registry.similarity.search import (
    blocks_similar,
    blocks_similar_to_payload,
    hit_to_dict,
    similarity_abstains,
    similarity_candidates,
)

__all__ = [
    "DEFAULT_POLICY",
    "POLICIES",
    "SimilarityHit",
    "blocks_similar",
    "blocks_similar_to_payload",
    "hit_to_dict",
    "policy_names",
    "similarity_abstains",
    "similarity_candidates",
]
