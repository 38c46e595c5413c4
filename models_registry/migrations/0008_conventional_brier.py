"""Stored Brier scores of two-label evaluations become the conventional figure (half the old one).

Before, the evaluation reported Brier's sum over labels for two labels too, twice what scikit-learn's
``brier_score_loss`` and the literature report. New evaluations carry ``brier_definition``; this
rewrites the older ones so that a version list or a comparison never puts the two definitions side by
side: job evaluations (and their subgroups), offline performance records, and versions' headline
metrics. An evaluation with ``brier_definition`` is already in the new form and left alone.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

DEFINITION = (
    "scikit-learn's brier_score_loss: for two labels the mean squared error of the outcome's probability "
    "(0 to 1); for more, the sum over labels of the squared error, averaged over cases (0 to 2)"
)


def _convert(evaluation: Any, labels: int | None) -> bool:
    """Halve the Brier scores of a two-label evaluation in place; True when something changed."""
    if not isinstance(evaluation, dict) or "brier" not in evaluation or "brier_definition" in evaluation:
        return False
    if labels is None:
        found = evaluation.get("labels")
        labels = len(found) if isinstance(found, list) else None
    if labels is None:
        return False
    if labels == 2:
        if isinstance(evaluation["brier"], int | float):
            evaluation["brier"] = evaluation["brier"] / 2
        for groups in (evaluation.get("subgroups") or {}).values():
            for group in groups if isinstance(groups, list) else []:
                if isinstance(group, dict) and isinstance(group.get("brier"), int | float):
                    group["brier"] = group["brier"] / 2
    evaluation["brier_definition"] = DEFINITION
    return True


def forwards(apps: Any, schema_editor: Any) -> None:
    TrainingJob = apps.get_model("training", "TrainingJob")
    ModelVersion = apps.get_model("models_registry", "ModelVersion")
    PerformanceRecord = apps.get_model("models_registry", "PerformanceRecord")
    labels_of_job: dict[int, int] = {}
    for job in TrainingJob.objects.exclude(evaluation={}).iterator(chunk_size=500):
        found = job.evaluation.get("labels") if isinstance(job.evaluation, dict) else None
        if isinstance(found, list):
            labels_of_job[job.pk] = len(found)
        if _convert(job.evaluation, None):
            if isinstance(job.metrics, dict) and "brier" in job.metrics and labels_of_job.get(job.pk) == 2:
                job.metrics["brier"] = job.evaluation["brier"]
            job.save(update_fields=["evaluation", "metrics"])
    labels_of_version: dict[int, int] = {}
    for record in PerformanceRecord.objects.filter(source="offline").iterator(chunk_size=500):
        found = record.metrics.get("labels") if isinstance(record.metrics, dict) else None
        if isinstance(found, list):
            labels_of_version[record.version_id] = len(found)
        if _convert(record.metrics, None):
            record.save(update_fields=["metrics"])
    for version in ModelVersion.objects.iterator(chunk_size=500):
        labels = labels_of_job.get(version.job_id) if version.job_id else None
        labels = labels if labels is not None else labels_of_version.get(version.pk)
        if _convert(version.metrics, labels):
            version.save(update_fields=["metrics"])


class Migration(migrations.Migration):
    dependencies = [
        ("models_registry", "0007_ab_test_roles"),
        ("training", "0004_dataset_heartbeat"),
    ]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
