"""PoolNode.status names the states that ready_at, claimed_at, session and prepared_at
encoded; ready_at (always set) and prepared_at (the status says it) go."""

from django.db import migrations, models
from django.db.models import Q


def to_status(apps, schema_editor):
    PoolNode = apps.get_model("sessions_app", "PoolNode")
    attached = Q(session__isnull=False)
    PoolNode.objects.filter(attached, prepared_at__isnull=False).update(status="prepared")
    PoolNode.objects.filter(attached, prepared_at__isnull=True).update(status="preparing")
    # Claimed with no session: taken, or being retired (the same to the keeper: it goes
    # once no node row of an active session names its container).
    PoolNode.objects.filter(session__isnull=True, claimed_at__isnull=False).update(status="taken")
    PoolNode.objects.filter(claimed_at__isnull=True).update(status="ready")


def to_columns(apps, schema_editor):
    PoolNode = apps.get_model("sessions_app", "PoolNode")
    PoolNode.objects.update(ready_at=models.F("created_at"))
    PoolNode.objects.filter(status="prepared").update(prepared_at=models.F("claimed_at"))


class Migration(migrations.Migration):
    dependencies = [
        ("sessions_app", "0006_session_setup_started_at"),
    ]

    operations = [
        migrations.AddField(
            model_name="poolnode",
            name="status",
            field=models.CharField(
                choices=[
                    ("ready", "Ready"),
                    ("preparing", "Preparing"),
                    ("prepared", "Prepared"),
                    ("taken", "Taken"),
                    ("retiring", "Retiring"),
                ],
                default="ready",
                max_length=16,
            ),
        ),
        migrations.RunPython(to_status, to_columns),
        migrations.RemoveField(model_name="poolnode", name="ready_at"),
        migrations.RemoveField(model_name="poolnode", name="prepared_at"),
    ]
