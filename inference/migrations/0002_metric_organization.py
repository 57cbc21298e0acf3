"""Metric buckets carry the calling organization (issue 8: a shared block's metrics show another
organization only its own traffic). Existing buckets are attributed to the block's owner: who called
before this migration is not known, and the owner is the one caller who may see every request."""

import django.db.models.deletion
from django.db import migrations, models


def attribute_to_owner(apps, schema_editor):
    BlockMetricBucket = apps.get_model("inference", "BlockMetricBucket")
    Block = apps.get_model("registry", "Block")
    BlockMetricBucket.objects.update(
        organization_id=models.Subquery(Block.objects.filter(pk=models.OuterRef("block_id")).values("organization_id")[:1])
    )


class Migration(migrations.Migration):

    dependencies = [
        ('inference', '0001_initial'),
        ('registry', '0001_initial'),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name='blockmetricbucket',
            name='unique_block_minute',
        ),
        migrations.AddField(
            model_name='blockmetricbucket',
            name='organization',
            field=models.ForeignKey(null=True, on_delete=django.db.models.deletion.CASCADE, related_name='metric_buckets', to='registry.organization'),
        ),
        migrations.RunPython(attribute_to_owner, migrations.RunPython.noop),
        migrations.AlterField(
            model_name='blockmetricbucket',
            name='organization',
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='metric_buckets', to='registry.organization'),
        ),
        migrations.AddConstraint(
            model_name='blockmetricbucket',
            constraint=models.UniqueConstraint(fields=('block', 'organization', 'minute'), name='unique_block_org_minute'),
        ),
    ]
