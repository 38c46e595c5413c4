"""Webhook signing secrets sealed at rest (``alerts.sealing``): the column is renamed, widened for
the Fernet token, and every stored secret is sealed under the current SECRET_KEY. Reversing opens
them again (with the same keys)."""

from __future__ import annotations

from django.db import migrations, models

from alerts.sealing import is_sealed, seal, unseal


def seal_existing(apps, schema_editor):
    receiver_model = apps.get_model("alerts", "AlertReceiver")
    for receiver in receiver_model.objects.exclude(secret_sealed="").only("pk", "secret_sealed").iterator():
        if not is_sealed(receiver.secret_sealed):
            receiver_model.objects.filter(pk=receiver.pk).update(secret_sealed=seal(receiver.secret_sealed))


def open_existing(apps, schema_editor):
    receiver_model = apps.get_model("alerts", "AlertReceiver")
    for receiver in receiver_model.objects.exclude(secret_sealed="").only("pk", "secret_sealed").iterator():
        if is_sealed(receiver.secret_sealed):
            receiver_model.objects.filter(pk=receiver.pk).update(secret_sealed=unseal(receiver.secret_sealed))


class Migration(migrations.Migration):
    dependencies = [("alerts", "0003_roles")]

    operations = [
        migrations.RenameField(model_name="alertreceiver", old_name="secret", new_name="secret_sealed"),
        migrations.AlterField(
            model_name="alertreceiver",
            name="secret_sealed",
            field=models.CharField(blank=True, editable=False, max_length=255),
        ),
        migrations.RunPython(seal_existing, open_existing),
    ]
