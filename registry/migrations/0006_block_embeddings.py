"""Block embeddings (issue 10): the BlockEmbedding table, pending rows for the blocks that exist, and,
where the PostgreSQL server offers pgvector, the `embedding vector(384)` column with its HNSW index
(registry.similarity.vectors.pgvector_setup). Without pgvector (SQLite, Debian's PostgreSQL 15) the
schema is complete without them and search uses an exact scan."""

import django.db.models.deletion
import pgvector.django.vector
from django.db import migrations, models


def pending_rows_for_existing_blocks(apps, schema_editor):
    Block = apps.get_model("registry", "Block")
    BlockEmbedding = apps.get_model("registry", "BlockEmbedding")
    pks = list(Block.objects.using(schema_editor.connection.alias).values_list("pk", flat=True))
    BlockEmbedding.objects.using(schema_editor.connection.alias).bulk_create(
        [BlockEmbedding(block_id=pk) for pk in pks], batch_size=1000, ignore_conflicts=True)


def vector_column_where_available(apps, schema_editor):
    from registry.similarity.vectors import pgvector_setup

    pgvector_setup(schema_editor)


class Migration(migrations.Migration):

    dependencies = [
        ("registry", "0005_apikey_parent"),
    ]

    operations = [
        migrations.CreateModel(
            name="BlockEmbedding",
            fields=[
                ("block", models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, primary_key=True,
                                               related_name="embedding", serialize=False, to="registry.block")),
                ("vector", models.BinaryField(blank=True, null=True)),
                ("model_version", models.CharField(blank=True, max_length=100)),
                ("text_hash", models.CharField(blank=True, max_length=64)),
                ("pending", models.BooleanField(default=True)),
                ("revision", models.PositiveIntegerField(default=0)),
                ("updated_at", models.DateTimeField(auto_now=True)),
            ],
            options={
                "indexes": [
                    models.Index(condition=models.Q(("pending", True)), fields=["block"], name="block_embedding_pending"),
                    models.Index(fields=["model_version"], name="block_embedding_model"),
                ],
            },
        ),
        migrations.CreateModel(
            name="BlockVector",
            fields=[
                ("block", models.OneToOneField(db_column="block_id", on_delete=django.db.models.deletion.DO_NOTHING,
                                               primary_key=True, related_name="vector_index", serialize=False,
                                               to="registry.block")),
                ("embedding", pgvector.django.vector.VectorField(dimensions=384, null=True)),
                ("model_version", models.CharField(blank=True, max_length=100)),
                ("revision", models.PositiveIntegerField(default=0)),
            ],
            options={"db_table": "registry_blockembedding", "managed": False},
        ),
        migrations.RunPython(pending_rows_for_existing_blocks, migrations.RunPython.noop),
        migrations.RunPython(vector_column_where_available, migrations.RunPython.noop),
    ]
