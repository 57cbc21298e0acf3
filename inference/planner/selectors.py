"""Reads for the planner: an organization's planner configuration (a row, or the defaults)."""

from __future__ import annotations

from django.db import close_old_connections

from inference.models import PlannerConfig
from registry.asyncdb import in_db_thread
from registry.models import Organization
from registry.ttlcache import AsyncTTLCache

CONFIG_CACHE_SECONDS = 2.0

_configs: AsyncTTLCache[PlannerConfig] = AsyncTTLCache(ttl=CONFIG_CACHE_SECONDS,
                                                      refresh_after=CONFIG_CACHE_SECONDS / 2)


def planner_config_get(*, organization: Organization) -> PlannerConfig:
    """The stored configuration with its blocks loaded, or an unsaved one holding the defaults."""
    found = (PlannerConfig.objects.select_related("planner_block__organization", "default_block__organization")
             .filter(organization=organization).first())
    return found or PlannerConfig(organization=organization)


def _load(organization: Organization) -> PlannerConfig:
    close_old_connections()
    return planner_config_get(organization=organization)


_aload = in_db_thread(_load)


async def planner_config_cached(organization: Organization) -> PlannerConfig:
    """For the request path: cached per organization for CONFIG_CACHE_SECONDS (a change made in this
    process shows at once, see clear_config_cache; elsewhere within that time)."""
    return await _configs.get(organization.pk, lambda: _aload(organization))


def clear_config_cache() -> None:
    _configs.clear()
