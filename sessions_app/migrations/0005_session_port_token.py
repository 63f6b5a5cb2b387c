from django.db import migrations, models

import sessions_app.models


def fill_tokens(apps, schema_editor):
    Session = apps.get_model("sessions_app", "Session")
    for session in Session.objects.filter(port_token__isnull=True).only("pk"):
        session.port_token = sessions_app.models.new_port_token()
        session.save(update_fields=["port_token"])


class Migration(migrations.Migration):
    dependencies = [("sessions_app", "0004_poolnode_prepared")]

    operations = [
        migrations.AddField(
            model_name="session",
            name="port_token",
            field=models.CharField(max_length=32, null=True),
        ),
        migrations.RunPython(fill_tokens, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="session",
            name="port_token",
            field=models.CharField(
                default=sessions_app.models.new_port_token, max_length=32, unique=True
            ),
        ),
    ]
