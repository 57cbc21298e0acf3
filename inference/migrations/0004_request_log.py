# The request log (inference.request_log) and the organization's content-logging switch.

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('inference', '0003_planner_config'),
        ('registry', '0006_block_embeddings'),
    ]

    operations = [
        migrations.CreateModel(
            name='RequestLogEntry',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('created_at', models.DateTimeField(db_index=True)),
                ('request_id', models.CharField(blank=True, default='', max_length=64)),
                ('key_label', models.CharField(blank=True, default='', max_length=130)),
                ('model', models.CharField(max_length=300)),
                ('status', models.PositiveSmallIntegerField()),
                ('stream', models.BooleanField(default=False)),
                ('latency_ms', models.FloatField()),
                ('ttft_ms', models.FloatField(blank=True, null=True)),
                ('tokens_in', models.PositiveIntegerField(default=0)),
                ('tokens_out', models.PositiveIntegerField(default=0)),
                ('route', models.JSONField(blank=True, null=True)),
                ('error', models.TextField(blank=True, default='')),
                ('prompt', models.JSONField(blank=True, null=True)),
                ('answer', models.TextField(blank=True, null=True)),
                ('api_key', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='registry.apikey')),
                ('block', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='registry.block')),
                ('organization', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='request_log', to='registry.organization')),
            ],
            options={
                'indexes': [models.Index(fields=['organization', '-created_at'], name='reqlog_org_time'), models.Index(fields=['organization', 'block', '-created_at'], name='reqlog_org_block_time')],
            },
        ),
        migrations.CreateModel(
            name='RequestLogSettings',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('store_content', models.BooleanField(default=False)),
                ('updated_at', models.DateTimeField(auto_now=True)),
                ('organization', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, related_name='request_log_settings', to='registry.organization')),
            ],
        ),
    ]
