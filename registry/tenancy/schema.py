"""Tells the OpenAPI schema (and so API clients and schemathesis) how callers authenticate."""

from drf_spectacular.authentication import SessionScheme
from drf_spectacular.extensions import OpenApiAuthenticationExtension


class BearerKeyScheme(OpenApiAuthenticationExtension):
    target_class = "registry.auth.ApiKeyAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer sb-..."}


class DashboardSessionScheme(SessionScheme):
    target_class = "registry.auth.SessionAuthentication"
