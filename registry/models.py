"""Organizations, their keys, and the blocks (LLMs and optimizers) they own or share."""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone
from pgvector.django import VectorField

from registry.embeddings import EMBEDDING_DIMENSIONS

API_KEY_PREFIX = "sb-"


class Organization(models.Model):
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=100, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.slug


class Membership(models.Model):
    OWNER = "owner"
    MEMBER = "member"
    ROLES = [(OWNER, "Owner"), (MEMBER, "Member")]

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=ROLES, default=MEMBER)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "organization"], name="unique_membership")]

    def __str__(self) -> str:
        return f"{self.user} in {self.organization} ({self.role})"


def hash_api_key(raw: str) -> str:
    # Keys carry 256 bits of randomness, so a fast hash is safe and keeps lookups O(1).
    return hashlib.sha256(raw.encode()).hexdigest()


class ApiKey(models.Model):
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100)
    # The first characters of the key, kept so a person can tell keys apart; never enough to use.
    prefix = models.CharField(max_length=16, db_index=True)
    hashed_key = models.CharField(max_length=64, unique=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    # Empty list: every model the organization may use.
    allowed_models = models.JSONField(default=list, blank=True)
    # A key acts with its creator's current role, so demoting a person demotes their keys. A key
    # minted with no person behind it (the embedded default's localhost owner) keeps this role;
    # empty means member rights only (also once a creator is deleted).
    role = models.CharField(max_length=10, choices=Membership.ROLES, blank=True, default="")
    # The key that minted this one through POST /api/keys; a minted key never has more rights than
    # its parent, and revoking the parent revokes it. Deleting the parent deletes it: it must not
    # outlive the key it was carved from.
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.CASCADE, related_name="children")

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @classmethod
    def generate(cls) -> str:
        return API_KEY_PREFIX + secrets.token_urlsafe(32)

    def set_key(self, raw: str) -> None:
        self.prefix = raw[:10]
        self.hashed_key = hash_api_key(raw)

    def is_usable(self, now: Any = None) -> bool:
        now = now or timezone.now()
        if self.revoked_at is not None:
            return False
        return self.expires_at is None or self.expires_at > now

    def allows_model(self, block_id: str) -> bool:
        return not self.allowed_models or block_id in self.allowed_models

    def allows_any(self, names: tuple[str, ...]) -> bool:
        """Whether the key lists one of the names a block goes by for its organization (see
        registry.selectors.block_key_names): a foreign block only by its qualified id."""
        return not self.allowed_models or any(name in self.allowed_models for name in names)


class Block(models.Model):
    LLM = "llm"
    OPTIMIZER = "optimizer"
    KINDS = [(LLM, "LLM"), (OPTIMIZER, "Optimizer")]

    PRIVATE = "private"
    PUBLIC = "public"
    VISIBILITIES = [(PRIVATE, "Private"), (PUBLIC, "Public")]

    kind = models.CharField(max_length=10, choices=KINDS, default=LLM)
    # Unique per organization only: another organization's ids and names never collide with
    # yours, and its blocks are named "<org-slug>/<block-id>" (qualified_id).
    block_id = models.CharField(max_length=200)
    name = models.CharField(max_length=200, blank=True)
    description = models.TextField(blank=True)
    tags = models.JSONField(default=list, blank=True)
    input_protocols = models.JSONField(default=list, blank=True)
    output_protocols = models.JSONField(default=list, blank=True)
    # blockMetadata's free keys (everything but description and tags).
    metadata = models.JSONField(default=dict, blank=True)
    backend_type = models.CharField(max_length=40, blank=True)
    backend_config = models.JSONField(default=dict, blank=True)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="blocks")
    visibility = models.CharField(max_length=10, choices=VISIBILITIES, default=PRIVATE)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["organization", "block_id"], name="unique_block_id_per_org")]
        indexes = [
            # Serves lookups by id and the listing order (block_id, pk) of every page.
            models.Index(fields=["block_id", "id"], name="block_id_order"),
            models.Index(fields=["kind", "enabled"], name="block_kind_enabled"),
            models.Index(fields=["name"], name="block_name"),
        ]

    def __str__(self) -> str:
        return self.block_id

    @property
    def qualified_id(self) -> str:
        """The one name that reaches this block from any organization: "<org-slug>/<block-id>"."""
        return f"{self.organization.slug}/{self.block_id}"

    SECRET_CONFIG_KEYS = ("api_key", "key", "token", "password", "secret")
    # Config `headers` that carry credentials: masked like the secret keys above.
    SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "api-key", "x-api-key", "x-goog-api-key"})

    @classmethod
    def is_secret_header(cls, name: str) -> bool:
        return name.lower() in cls.SECRET_HEADERS

    def public_backend_config(self) -> dict[str, Any]:
        public: dict[str, Any] = {}
        for k, v in (self.backend_config or {}).items():
            if k == "headers" and isinstance(v, dict):
                v = {name: ("***" if self.is_secret_header(name) and value else value) for name, value in v.items()}
            elif any(s in k.lower() for s in self.SECRET_CONFIG_KEYS) and v:
                v = "***"
            public[k] = v
        return public

    def to_dict(self) -> dict[str, Any]:
        """The seed's camelCase shape."""
        return {
            "id": self.block_id,
            "kind": self.kind,
            "name": self.name or self.block_id,
            "blockMetadata": {**(self.metadata or {}), "description": self.description, "tags": list(self.tags)},
            "inputProtocols": list(self.input_protocols),
            "outputProtocols": list(self.output_protocols),
            "backend": {"type": self.backend_type, "config": self.public_backend_config()},
            "qualifiedId": self.qualified_id if self.organization_id else None,
            "organization": self.organization.slug if self.organization_id else None,
            "visibility": self.visibility,
            "enabled": self.enabled,
            "createdAt": self.created_at.isoformat() if self.created_at else None,
            "updatedAt": self.updated_at.isoformat() if self.updated_at else None,
        }

    def searchable(self) -> dict[str, Any]:
        return {
            "id": self.block_id,
            "description": self.description,
            "tags": list(self.tags),
            "inputProtocols": list(self.input_protocols),
            "outputProtocols": list(self.output_protocols),
        }


class BlockGrant(models.Model):
    """Shares one private block with one other organization."""

    block = models.ForeignKey(Block, on_delete=models.CASCADE, related_name="grants")
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="granted_blocks")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["block", "organization"], name="unique_block_grant")]

    def __str__(self) -> str:
        return f"{self.block_id} -> {self.organization_id}"



class BlockEmbedding(models.Model):
    """A block's sentence embedding (registry/similarity), one row per block, written off the request path.

    `pending` is set in the transaction that changes the block's searchable text (or creates it) and
    cleared by the job that embeds it; `revision` counts those changes, so a job that embedded an
    older text never overwrites a newer mark (its UPDATE matches no row). `vector` holds float32 bytes
    on every database; where PostgreSQL has pgvector, migration 0006 adds the `embedding` column
    (see BlockVector) that the HNSW index serves.
    """

    block = models.OneToOneField(Block, primary_key=True, on_delete=models.CASCADE, related_name="embedding")
    vector = models.BinaryField(null=True, blank=True)
    model_version = models.CharField(max_length=100, blank=True)
    text_hash = models.CharField(max_length=64, blank=True)
    pending = models.BooleanField(default=True)
    revision = models.PositiveIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [
            # Searches look for pending rows among their candidates every time: only those are indexed.
            models.Index(fields=["block"], condition=models.Q(pending=True), name="block_embedding_pending"),
            models.Index(fields=["model_version"], name="block_embedding_model"),
        ]

    def __str__(self) -> str:
        return f"{self.block_id} ({'pending' if self.pending else self.model_version})"


class BlockVector(models.Model):
    """The pgvector view of registry_blockembedding: its `embedding vector(384)` column and HNSW index
    exist only where the `vector` extension does (migration 0006, registry.similarity.vectors), so this
    model is unmanaged and only queried after registry.similarity.vectors.pgvector_ready() said yes."""

    block = models.OneToOneField(Block, primary_key=True, on_delete=models.DO_NOTHING, related_name="vector_index",
                                 db_column="block_id")
    embedding = VectorField(dimensions=EMBEDDING_DIMENSIONS, null=True)
    model_version = models.CharField(max_length=100, blank=True)
    revision = models.PositiveIntegerField(default=0)

    class Meta:
        managed = False
        db_table = "registry_blockembedding"

    def __str__(self) -> str:
        return str(self.block_id)
