"""Writes for the planner: an organization's planner configuration."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from inference.models import PlannerConfig
from inference.planner.selectors import clear_config_cache, planner_config_get
from registry.models import Organization

FIELDS = ("mode", "planner_block", "default_block", "min_score", "candidates")


class PlannerConfigRefused(ValueError):
    """Well-formed values that do not work together (the API's 422)."""


def planner_config_update(*, organization: Organization, values: dict[str, Any], partial: bool) -> PlannerConfig:
    """Set the fields in `values` (blocks already resolved and checked by the caller); `partial` False
    resets the fields left out to their defaults. Refuses a mode whose block is missing."""
    with transaction.atomic():
        config = PlannerConfig.objects.select_for_update().filter(organization=organization).first()
        config = config or PlannerConfig(organization=organization)
        defaults = PlannerConfig(organization=organization)
        for name in FIELDS:
            if name in values:
                setattr(config, name, values[name])
            elif not partial:
                setattr(config, name, getattr(defaults, name))
        if config.mode == PlannerConfig.HARDCODED and config.default_block is None:
            raise PlannerConfigRefused("mode 'hardcoded' runs the default block: set defaultBlock")
        if config.mode == PlannerConfig.PLAN and config.planner_block is None:
            raise PlannerConfigRefused("mode 'plan' asks the planner block to choose: set plannerBlock")
        config.save()
    clear_config_cache()
    return planner_config_get(organization=organization)
