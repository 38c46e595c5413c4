"""Give the roles their learning-loop permissions (learning_engine.roles), and create the loop's
own account: the author of the datasets and training jobs a cycle makes (``learning.system``)."""

from __future__ import annotations

from django.contrib.auth.hashers import make_password
from django.db import migrations

from learning_engine.roles import sync_roles

LOOP_USERNAME = "learning-loop"


def create_loop_account(apps, schema_editor):
    user_model = apps.get_model("auth", "User")
    user_model.objects.get_or_create(
        username=LOOP_USERNAME,
        defaults={"is_active": False, "password": make_password(None), "first_name": "Learning loop"},
    )


class Migration(migrations.Migration):
    dependencies = [
        ("learning", "0001_initial"),
        ("models_registry", "0011_dictionary_lineage"),
        ("training", "0008_locked_evaluation_set"),
    ]

    operations = [
        migrations.RunPython(sync_roles, migrations.RunPython.noop),
        migrations.RunPython(create_loop_account, migrations.RunPython.noop),
    ]
