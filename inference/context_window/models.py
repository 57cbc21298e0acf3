"""Conversations kept per (organization, session_id): the seed's stateful inference. A chat request
that names a `session_id` gets the history first and its exchange appended (hook.py)."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from registry.models import Organization


class ChatSession(models.Model):
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="chat_sessions")
    # The client's name for the conversation; another organization's same name is another session.
    session_id = models.CharField(max_length=128)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["organization", "session_id"], name="chat_session_per_org")]

    def __str__(self) -> str:
        return self.session_id


class SessionMessage(models.Model):
    """One message of a session, in the order written (pk)."""

    session = models.ForeignKey(ChatSession, on_delete=models.CASCADE, related_name="messages")
    role = models.CharField(max_length=16)
    content = models.JSONField()  # a string, or a list of content parts, as the chat API takes them
    name = models.CharField(max_length=64, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["session", "pk"]
        indexes = [models.Index(fields=["session", "id"], name="session_message_order")]

    def __str__(self) -> str:
        return f"{self.role} in {self.session_id}"
