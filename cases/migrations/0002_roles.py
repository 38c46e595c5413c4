"""Create the role groups with the permissions of learning_engine.roles."""

from __future__ import annotations

from django.db import migrations

from learning_engine.roles import sync_roles


class Migration(migrations.Migration):
    dependencies = [
        ("cases", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(sync_roles, migrations.RunPython.noop)]
