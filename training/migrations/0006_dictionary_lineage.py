"""Dataset snapshots record the data dictionary version they were built under; jobs the train
split's ranges (issue 11).

Back-fill: a ready snapshot built before dictionaries gets the version every one of its cases was
checked against (``Case.dictionary``, set by ``cases/0006``) when they all share one; otherwise
(a case flagged, or cases checked against different versions) it stays null: it was not built
under one version, and the admin and the API say so. Jobs keep ``{}``: their train split's ranges
were not measured (predict falls back to the dictionary's expected range for their versions).
"""

import django.db.models.deletion
from django.db import migrations, models

CHUNK = 1000


def record_snapshot_dictionaries(apps, schema_editor):
    DatasetSnapshot = apps.get_model("training", "DatasetSnapshot")
    Case = apps.get_model("cases", "Case")
    ready = DatasetSnapshot.objects.filter(status="ready", dictionary__isnull=True).only("pk", "manifest")
    for snapshot in ready.iterator(chunk_size=100):
        ids = [int(pk) for ids in (snapshot.manifest or {}).values() if isinstance(ids, list) for pk in ids]
        versions = set()
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start : start + CHUNK]
            versions.update(Case.objects.filter(pk__in=chunk).values_list("dictionary_id", flat=True).distinct())
            if None in versions or len(versions) > 1:
                break
        if len(versions) == 1 and None not in versions:
            DatasetSnapshot.objects.filter(pk=snapshot.pk).update(dictionary_id=versions.pop())


class Migration(migrations.Migration):
    dependencies = [
        ("cases", "0006_case_dictionary"),
        ("training", "0005_dataset_stage"),
    ]

    operations = [
        migrations.AddField(
            model_name="datasetsnapshot",
            name="dictionary",
            field=models.ForeignKey(
                blank=True,
                editable=False,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="dataset_snapshots",
                help_text="The cohort's data dictionary version when the build read its cases. Empty: the cohort had "
                "none published, or the snapshot was built before dictionaries and its cases were not all checked "
                "against one version.",
                to="cases.datadictionary",
            ),
        ),
        migrations.AddField(
            model_name="trainingjob",
            name="training_ranges",
            field=models.JSONField(
                blank=True,
                default=dict,
                editable=False,
                help_text='{"findings.<key>" or "age": {"min": x, "max": y}}',
            ),
        ),
        migrations.RunPython(record_snapshot_dictionaries, migrations.RunPython.noop),
    ]
