"""Give the roles their registry permissions (learning_engine.roles)."""

from __future__ import annotations

from django.db import migrations

from learning_engine.roles import sync_roles


class Migration(migrations.Migration):
    dependencies = [
        ("models_registry", "0001_initial"),
        ("training", "0002_roles"),
    ]

    operations = [migrations.RunPython(sync_roles, migrations.RunPython.noop)]
