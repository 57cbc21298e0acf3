import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('registry', '0001_initial'),
        ('workflows', '0002_run_events'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name='workflowrun',
            name='event_seq',
            field=models.PositiveIntegerField(default=0),
        ),
        # Runs made before the counter: it starts at their last event's number.
        migrations.RunSQL(
            "UPDATE workflows_workflowrun SET event_seq = COALESCE((SELECT MAX(e.seq) FROM workflows_runevent e "
            "WHERE e.run_id = workflows_workflowrun.id), 0)",
            migrations.RunSQL.noop),
        migrations.AlterField(
            model_name='approval',
            name='run',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.CASCADE, related_name='approvals', to='workflows.workflowrun'),
        ),
        migrations.AddField(
            model_name='approval',
            name='request_id',
            field=models.CharField(blank=True, default='', max_length=64),
        ),
        migrations.AddField(
            model_name='approval',
            name='requested_by',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL),
        ),
        migrations.AddField(
            model_name='approval',
            name='requested_by_key',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='registry.apikey'),
        ),
        migrations.AddConstraint(
            model_name='approval',
            constraint=models.UniqueConstraint(condition=models.Q(('request_id', ''), _negated=True), fields=('organization', 'request_id'), name='approval_once_per_request'),
        ),
    ]
