"""Who is calling: one organization, reached through an API key, a dashboard session or dev mode."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from registry.models import ApiKey, Organization


@dataclass
class Principal:
    organization: Organization
    api_key: ApiKey | None = None
    user: Any = None
    dev_mode: bool = False

    # DRF and Django look for these on request.user.
    is_authenticated = True
    is_active = True
    is_anonymous = False

    @property
    def pk(self) -> int | None:
        return getattr(self.user, "pk", None)

    def allows_model(self, block_id: str) -> bool:
        return self.api_key is None or self.api_key.allows_model(block_id)
