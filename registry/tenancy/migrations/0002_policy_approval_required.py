from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('tenancy', '0001_initial'),
    ]

    operations = [
        migrations.AddField(
            model_name='policyrule',
            name='approval_required',
            field=models.JSONField(blank=True, null=True),
        ),
    ]
