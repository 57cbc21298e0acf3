from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("agents", "0001_initial")]

    operations = [
        migrations.AddField(model_name="agentdefinition", name="rlm", field=models.JSONField(blank=True, null=True)),
        migrations.AddField(model_name="agentdefinition", name="actor_options",
                            field=models.JSONField(blank=True, default=dict)),
        migrations.AddField(model_name="agentdefinition", name="responder_options",
                            field=models.JSONField(blank=True, default=dict)),
    ]
