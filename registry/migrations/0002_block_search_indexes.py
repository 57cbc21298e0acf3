"""Indexes for the block query language (registry/query.py), PostgreSQL only.

GIN (jsonb_ops) on the JSON list columns serves `@>` (==, IN on tags and protocols, and
metadata containment); pg_trgm GIN on description and name serves ILIKE (the LIKE
operator). SQLite (the embedded default) has neither, so this migration does nothing there.
CREATE EXTENSION needs a role allowed to create it (a superuser, or pg_trgm pre-installed). A server
without the pg_trgm contrib module at all (some self-contained builds, such as the pgvector PostgreSQL
the similarity tests start) migrates without the two trigram indexes: LIKE then scans.
"""

from django.db import migrations

INDEXES = [
    ("block_tags_gin", "USING gin (tags)"),
    ("block_input_protocols_gin", "USING gin (input_protocols)"),
    ("block_output_protocols_gin", "USING gin (output_protocols)"),
    ("block_metadata_gin", "USING gin (metadata)"),
    ("block_description_trgm", "USING gin (description gin_trgm_ops)"),
    ("block_name_trgm", "USING gin (name gin_trgm_ops)"),
    ("block_visibility", "(visibility)"),
]


def create_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm'")
        trigrams = cursor.fetchone() is not None
    if trigrams:
        schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    for name, definition in INDEXES:
        if "gin_trgm_ops" in definition and not trigrams:
            continue
        schema_editor.execute(f"CREATE INDEX IF NOT EXISTS {name} ON registry_block {definition}")


def drop_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name, _ in INDEXES:
        schema_editor.execute(f"DROP INDEX IF EXISTS {name}")


class Migration(migrations.Migration):
    dependencies = [("registry", "0001_initial")]

    operations = [migrations.RunPython(create_indexes, drop_indexes)]
