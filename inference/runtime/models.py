"""The runtime's state: an organization's components (by name) and its vector stores' rows.

Kept in the database, so a component outlives the socket and the process that defined it and every
process of the organization sees the same ones (the in-process Runtime and the server included)."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from registry.models import Organization


class Component(models.Model):
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="runtime_components")
    name = models.CharField(max_length=100)
    # The canonical type (inference.runtime.components.TYPES); an alias given at define time is resolved.
    type = models.CharField(max_length=50)
    attrs = models.JSONField(default=dict)
    # Who defined it: a member may delete only their own (an owner any).
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["organization", "name"], name="runtime_component_name")]

    def __str__(self) -> str:
        return f"{self.organization_id}/{self.name} ({self.type})"


class VectorRecord(models.Model):
    """One row of a vector store: its embedding as little-endian float32 bytes (the dimension is the
    store's), the document and its metadata."""

    component = models.ForeignKey(Component, on_delete=models.CASCADE, related_name="vectors")
    vector = models.BinaryField()
    document = models.TextField()
    metadata = models.JSONField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["component", "id"], name="runtime_vector_component")]

    def __str__(self) -> str:
        return f"{self.component_id}#{self.pk}"


class RuntimeAccess(models.Model):
    """What the operator opened for one organization (the admin edits it): the `http_request` operator
    is off for an organization until this says otherwise (and RUNTIME_HTTP_REQUEST is on)."""

    organization = models.OneToOneField(Organization, on_delete=models.CASCADE, related_name="runtime_access")
    http_request = models.BooleanField(default=False)

    class Meta:
        verbose_name_plural = "runtime access"

    def __str__(self) -> str:
        return f"{self.organization_id}: http_request={'on' if self.http_request else 'off'}"
