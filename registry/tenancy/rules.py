"""The policy rules cache: each organization's rules and quotas, kept in-process.

The gateway calls `admit` on every request, so the rules must not cost a database query.
Each process keeps one snapshot per organization, stamped with a version. A change to a
rule, quota, block or grant (post_save/post_delete, see signals.py) bumps the version:
at once in the process that made the change, and through a Redis counter for every
other process, which reads it at most every RULES_POLL_S seconds. So an edit is seen
immediately where it was made and within RULES_POLL_S everywhere else, without a restart.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from django.conf import settings

from registry.asyncdb import in_db_thread
from registry.models import Block, Organization
from registry.outages import DATABASE_ERRORS, DatabaseTimeout
from registry.selectors import block_resolve, blocks_callable
from registry.tenancy.models import PolicyRule, Quota
from registry.tenancy.quota import Limits, RedisQuotaStore, quota_store, redis_timeouts

log = logging.getLogger(__name__)

VERSION_KEY = "sb:tenancy:rules-version"
RULES_POLL_S = 0.5


@dataclass(frozen=True)
class OrgRules:
    org_rule: dict = field(default_factory=dict)
    block_rules: dict[int, dict] = field(default_factory=dict)
    # Quota limits by key id; None is the organization-wide quota.
    quotas: dict[int | None, Limits] = field(default_factory=dict)
    # The stored rules' fallback references that name a block the organization may run right now
    # (registry.tenancy.access's rule, ids only), with that block: admission checks the key on it.
    usable_fallbacks: dict[str, Block] = field(default_factory=dict)

    def limits_for(self, api_key_id: int | None) -> list[Limits]:
        found = [self.quotas.get(None)]
        if api_key_id is not None:
            found.insert(0, self.quotas.get(api_key_id))
        return [limits for limits in found if limits is not None]


def limits_of(quota: Quota) -> Limits:
    return Limits(scope=quota.scope, requests_per_minute=quota.requests_per_minute,
                  tokens_per_minute=quota.tokens_per_minute, token_budget=quota.token_budget,
                  budget_period=quota.budget_period)


def load_org_rules(organization_id: int) -> OrgRules:
    org_rule: dict = {}
    block_rules: dict[int, dict] = {}
    for rule in PolicyRule.objects.filter(organization_id=organization_id):
        if rule.block_id is None:
            org_rule = rule.values()
        else:
            block_rules[rule.block_id] = rule.values()
    quotas = {q.api_key_id: limits_of(q) for q in Quota.objects.filter(organization_id=organization_id)}
    wanted = {b for values in [org_rule, *block_rules.values()] for b in values.get("fallbacks") or []}
    usable: dict[str, Block] = {}
    if wanted:
        organization = Organization.objects.get(pk=organization_id)
        for reference in wanted:
            # The gateway's naming rule: own id, qualified id, platform id; never a name.
            block = block_resolve(organization=organization, reference=reference, names=False,
                                  queryset=blocks_callable(organization))
            if block is not None:
                usable[reference] = block
    return OrgRules(org_rule=org_rule, block_rules=block_rules, quotas=quotas, usable_fallbacks=usable)


_aload_org_rules = in_db_thread(load_org_rules)


class RulesCache:
    def __init__(self):
        self.local_version = 0
        self._shared_version = 0
        self._shared_read_at = 0.0
        self._entries: dict[int, tuple[tuple[int, int], OrgRules]] = {}
        # Per organization: when a reload first failed because the database was down.
        self._stale_since: dict[int, float] = {}
        self._sync_redis = None

    # Called from signal handlers, in whatever thread saved the model.
    def bump(self) -> None:
        self.local_version += 1
        self._entries.clear()
        if settings.REDIS_URL:
            try:
                if self._sync_redis is None:
                    import redis

                    self._sync_redis = redis.Redis.from_url(settings.REDIS_URL, **redis_timeouts())
                self._sync_redis.incr(VERSION_KEY)
            except Exception:  # the local bump still holds; other processes catch up on the next change
                log.exception("could not publish the tenancy rules version to Redis")

    async def _version(self) -> tuple[int, int]:
        store = quota_store()
        now = time.monotonic()
        if isinstance(store, RedisQuotaStore) and now - self._shared_read_at >= RULES_POLL_S:
            client, _, _ = store._client()
            self._shared_version = int(await client.get(VERSION_KEY) or 0)
            self._shared_read_at = now
        return self.local_version, self._shared_version

    async def get(self, organization_id: int) -> OrgRules:
        version = await self._version()
        hit = self._entries.get(organization_id)
        if hit is not None and hit[0] == version:
            return hit[1]
        try:
            try:
                async with asyncio.timeout(settings.DB_LOOKUP_TIMEOUT_S or None):
                    rules = await _aload_org_rules(organization_id)
            except TimeoutError:
                raise DatabaseTimeout(f"no answer from the database within {settings.DB_LOOKUP_TIMEOUT_S:g} s") from None
        except DATABASE_ERRORS:
            # PostgreSQL is down: the snapshot we had goes on serving for the outage grace, counted
            # from the first failed reload (the snapshot was current until a change was announced).
            if hit is None:
                raise
            now = time.monotonic()
            since = self._stale_since.setdefault(organization_id, now)
            if now - since >= settings.DB_OUTAGE_GRACE_S:
                raise
            return hit[1]
        self._stale_since.pop(organization_id, None)
        # Stamped with the version read before loading: a change made meanwhile forces a reload.
        self._entries[organization_id] = (version, rules)
        return rules

    def clear(self) -> None:
        self._entries.clear()
        self._stale_since.clear()
        self._shared_read_at = 0.0


rules_cache = RulesCache()

