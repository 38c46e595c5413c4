# PeriodicSchedule moves from training to learning_engine (issue 14): Django's state only. The table
# keeps its name (Meta.db_table) and its rows; training/migrations/0007 takes the model out of
# training's state after this one puts it here. A dependency on a training migration from the lowest
# app is a migration order, not an import: the table must exist before this app claims it.

import uuid

from django.db import migrations, models


def claim_content_type(apps, schema_editor):
    """The permissions and admin log entries of the model follow it: its content type changes label."""
    ContentType = apps.get_model("contenttypes", "ContentType")
    db = schema_editor.connection.alias
    if not ContentType.objects.using(db).filter(app_label="learning_engine", model="periodicschedule").exists():
        ContentType.objects.using(db).filter(app_label="training", model="periodicschedule").update(
            app_label="learning_engine"
        )


def return_content_type(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    db = schema_editor.connection.alias
    if not ContentType.objects.using(db).filter(app_label="training", model="periodicschedule").exists():
        ContentType.objects.using(db).filter(app_label="learning_engine", model="periodicschedule").update(
            app_label="training"
        )


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("contenttypes", "0002_remove_content_type_name"),
        ("training", "0003_periodic_schedule"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="PeriodicSchedule",
                    fields=[
                        ("name", models.CharField(max_length=100, primary_key=True, serialize=False)),
                        ("token", models.UUIDField(default=uuid.uuid4)),
                        ("interval_seconds", models.PositiveIntegerField()),
                        ("last_run_at", models.DateTimeField(blank=True, null=True)),
                        ("next_run_at", models.DateTimeField()),
                    ],
                    options={
                        "verbose_name": "periodic schedule",
                        "db_table": "training_periodicschedule",
                    },
                ),
            ],
            database_operations=[],
        ),
        migrations.RunPython(claim_content_type, return_content_type),
    ]
