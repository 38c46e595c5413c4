"""Give the roles their alert permissions (learning_engine.roles)."""

from __future__ import annotations

from django.db import migrations

from learning_engine.roles import sync_roles


class Migration(migrations.Migration):
    dependencies = [("alerts", "0002_receivers_and_deliveries")]

    operations = [migrations.RunPython(sync_roles, migrations.RunPython.noop)]
