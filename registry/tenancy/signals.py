"""Any change that can alter an access or admission decision invalidates the rules cache and,
in this process, the access check's block cache."""

from __future__ import annotations

from django.db.models.signals import post_delete, post_save

from registry.models import Block, BlockGrant
from registry.tenancy.access import clear_block_cache
from registry.tenancy.models import PolicyRule, Quota
from registry.tenancy.rules import rules_cache


def _invalidate(sender, **kwargs) -> None:
    rules_cache.bump()
    clear_block_cache()


for _model in (PolicyRule, Quota, Block, BlockGrant):
    post_save.connect(_invalidate, sender=_model, dispatch_uid=f"tenancy-rules-{_model.__name__}-save")
    post_delete.connect(_invalidate, sender=_model, dispatch_uid=f"tenancy-rules-{_model.__name__}-delete")
