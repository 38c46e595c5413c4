"""The data migration that makes stored two-label Brier scores the conventional figure."""

from __future__ import annotations

import importlib
from typing import Any

import pytest
from django.apps import apps

from models_registry.models import ModelVersion, PerformanceRecord
from tests.models_registry.registry.factories import ModelVersionFactory, ready_snapshot
from tests.training.factories import ModelTypeFactory
from training.models import TrainingJob

migration = importlib.import_module("models_registry.migrations.0008_conventional_brier")


def test_a_two_label_evaluation_is_halved_subgroups_too_and_marked():
    evaluation: dict[str, Any] = {
        "labels": ["a", "b"],
        "brier": 0.0595,
        "subgroups": {"sex": [{"value": "f", "brier": 0.08}]},
    }
    assert migration._convert(evaluation, None)
    assert evaluation["brier"] == pytest.approx(0.02975)
    assert evaluation["subgroups"]["sex"][0]["brier"] == pytest.approx(0.04)
    assert evaluation["brier_definition"] == migration.DEFINITION
    assert not migration._convert(evaluation, None)  # once only
    assert evaluation["brier"] == pytest.approx(0.02975)


def test_more_labels_keep_their_figure_and_unknown_ones_are_left_alone():
    three = {"labels": ["a", "b", "c"], "brier": 0.4}
    assert migration._convert(three, None)
    assert three["brier"] == 0.4
    unknown = {"brier": 0.4}
    assert not migration._convert(unknown, None)
    assert "brier_definition" not in unknown
    assert migration._convert(unknown, 2)
    assert unknown["brier"] == 0.2


@pytest.mark.django_db
def test_the_migration_rewrites_jobs_records_and_versions(make_user):
    engineer = make_user("ml_engineer")
    version = ModelVersionFactory.create(
        trained=True,
        dataset=ready_snapshot(ModelTypeFactory.create(diagnosis=True), by=engineer, seed=1),
        created_by=engineer,
    )
    new = version.metrics["brier"]
    # As an older release stored it: twice the figure, no definition.
    old = {key: value for key, value in version.metrics.items() if key != "brier_definition"}
    ModelVersion.objects.filter(pk=version.pk).update(metrics={**old, "brier": 2 * new})
    job = version.job
    assert job is not None
    evaluation = {key: value for key, value in job.evaluation.items() if key != "brier_definition"}
    TrainingJob.objects.filter(pk=job.pk).update(evaluation={**evaluation, "brier": 2 * new})
    record = PerformanceRecord.objects.get(version=version, source="offline")
    PerformanceRecord.objects.filter(pk=record.pk).update(metrics={**evaluation, "brier": 2 * new})

    migration.forwards(apps, None)

    version.refresh_from_db()
    job.refresh_from_db()
    record.refresh_from_db()
    assert len(job.evaluation["labels"]) == 2
    assert version.metrics["brier"] == pytest.approx(new)
    assert job.evaluation["brier"] == pytest.approx(new)
    assert record.metrics["brier"] == pytest.approx(new)
    assert version.metrics["brier_definition"] == migration.DEFINITION
