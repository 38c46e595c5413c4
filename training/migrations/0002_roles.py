"""Give the roles their training permissions (learning_engine.roles)."""

from __future__ import annotations

from django.db import migrations

from learning_engine.roles import sync_roles


class Migration(migrations.Migration):
    dependencies = [
        ("training", "0001_initial"),
        ("cases", "0002_roles"),
    ]

    operations = [migrations.RunPython(sync_roles, migrations.RunPython.noop)]
