"""Give ML engineers and clinical leads the A/B test permissions (learning_engine.roles)."""

from __future__ import annotations

from django.db import migrations

from learning_engine.roles import sync_roles


class Migration(migrations.Migration):
    dependencies = [
        ("models_registry", "0006_ab_tests"),
    ]

    operations = [migrations.RunPython(sync_roles, migrations.RunPython.noop)]
