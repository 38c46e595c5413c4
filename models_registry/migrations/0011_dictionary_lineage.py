"""Model versions record the data dictionary version they were trained under and the train
split's ranges (issue 11).

Back-fill: a version gets its snapshot's dictionary version when the snapshot recorded one
(``training/0006``), else its cohort's current published version: the one predict checked its
records against until now, so its answers do not change with this migration, and from now on it
stays on that version. Null when the cohort has no published dictionary. ``training_ranges`` stays
``{}``: not measured when the version was trained (predict then warns against the dictionary's
expected range, and says so: ``"basis": "expected_range"``).
"""

import django.db.models.deletion
from django.db import migrations, models


def record_version_dictionaries(apps, schema_editor):
    ModelVersion = apps.get_model("models_registry", "ModelVersion")
    DataDictionary = apps.get_model("cases", "DataDictionary")
    current: dict[str, int | None] = {}
    versions = ModelVersion.objects.filter(dictionary__isnull=True).select_related("dataset", "model_type")
    for version in versions.iterator(chunk_size=100):
        dictionary_id = version.dataset.dictionary_id if version.dataset is not None else None
        if dictionary_id is None:
            cohort = version.model_type.cohort
            if cohort not in current:
                current[cohort] = (
                    DataDictionary.objects.filter(cohort__slug=cohort, status="published")
                    .order_by("-version")
                    .values_list("pk", flat=True)
                    .first()
                )
            dictionary_id = current[cohort]
        if dictionary_id is not None:
            ModelVersion.objects.filter(pk=version.pk).update(dictionary_id=dictionary_id)


class Migration(migrations.Migration):
    dependencies = [
        ("cases", "0006_case_dictionary"),
        ("training", "0006_dictionary_lineage"),
        ("models_registry", "0010_artifact_validation"),
    ]

    operations = [
        migrations.AddField(
            model_name="modelversion",
            name="dictionary",
            field=models.ForeignKey(
                blank=True,
                editable=False,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="model_versions",
                help_text="The data dictionary version the model was trained under; predict checks records against it. "
                "Empty: its cohort had none published (predict then uses the cohort's current version, if any).",
                to="cases.datadictionary",
            ),
        ),
        migrations.AddField(
            model_name="modelversion",
            name="training_ranges",
            field=models.JSONField(
                blank=True,
                default=dict,
                editable=False,
                help_text='{"findings.<key>" or "age": {"min": x, "max": y}}',
            ),
        ),
        migrations.RunPython(record_version_dictionaries, migrations.RunPython.noop),
    ]
