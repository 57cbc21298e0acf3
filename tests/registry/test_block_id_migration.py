"""The migration that makes block ids unique per organization keeps every existing id (issue 8)."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, connection, transaction
from django.db.migrations.executor import MigrationExecutor

from registry.models import Block, Organization

pytestmark = pytest.mark.django_db(transaction=True)


def _this_migration_and_its_parent(executor: MigrationExecutor) -> tuple[tuple[str, str], tuple[str, str]]:
    # Found by name, not number: the lead renumbers migrations at merge.
    node = next(n for n in executor.loader.graph.nodes if n[0] == "registry" and n[1].endswith("block_id_per_org"))
    parent = next(p for p in executor.loader.graph.node_map[node].parents if p.key[0] == "registry").key
    return node, parent


def test_the_per_organization_id_migration_keeps_every_existing_block_id():
    executor = MigrationExecutor(connection)
    node, parent = _this_migration_and_its_parent(executor)
    executor.migrate([parent])
    old = executor.loader.project_state([parent]).apps
    acme = old.get_model("registry", "Organization").objects.create(slug="acme", name="Acme")
    globex = old.get_model("registry", "Organization").objects.create(slug="globex", name="Globex")
    old_block = old.get_model("registry", "Block")
    for org, block_id in ((acme, "summarizer"), (acme, "x"), (globex, "y")):
        old_block.objects.create(organization=org, block_id=block_id)

    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
    assert sorted(Block.objects.values_list("organization__slug", "block_id")) == [
        ("acme", "summarizer"), ("acme", "x"), ("globex", "y")]
    # Now another organization may use the same id, but an organization never twice.
    Block.objects.create(organization=Organization.objects.get(slug="globex"), block_id="summarizer")
    with pytest.raises(IntegrityError), transaction.atomic():
        Block.objects.create(organization=Organization.objects.get(slug="acme"), block_id="summarizer")
