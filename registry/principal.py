"""Who is calling: one organization, reached through an API key, a dashboard session or dev mode."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from registry.models import ApiKey, Block, Organization
from registry.selectors import block_key_names


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

    def allows_names(self, names: tuple[str, ...]) -> bool:
        """`names`: what a block goes by for this organization (registry.selectors.block_key_names)."""
        return self.api_key is None or self.api_key.allows_any(names)

    def allows_block(self, block: Block) -> bool:
        """Whether the key's allowed_models lists the block: by plain id for the organization's own
        and the platform's public blocks, by qualified id for anyone else's."""
        return self.api_key is None or self.api_key.allows_any(block_key_names(block, organization=self.organization))
