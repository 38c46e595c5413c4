"""The whole path on real data: import, four-eyes approval, snapshot, a job run by the task."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from training.artifacts import load_artifact
from training.datasets import build_snapshot, create_snapshot
from training.models import DatasetSnapshot, ModelType, TrainingJob
from training.tasks import run_training_job

pytestmark = pytest.mark.django_db


@pytest.fixture
def breast_mass(settings):
    settings.DEBUG = True
    call_command("load_demo", "--respiratory-cases", "0", verbosity=0)
    return ModelType.objects.get(slug="breast-mass")


def test_logistic_regression_on_breast_cancer_wisconsin_reaches_093_through_the_full_path(breast_mass):
    from django.contrib.auth import get_user_model

    engineer = get_user_model().objects.get(username="demo-ml-engineer")
    snapshot = create_snapshot(breast_mass, by=engineer, seed=7)
    snapshot = build_snapshot(snapshot.pk)
    assert snapshot.status == DatasetSnapshot.Status.READY
    assert set(snapshot.label_counts["test"]) == {"C50.9", "D24.9"}

    job = TrainingJob.submit(
        model_type=breast_mass, by=engineer, dataset=snapshot, algorithm="logistic_regression", hyperparameters={}
    )
    outcome = run_training_job.call(job.pk)

    job.refresh_from_db()
    assert outcome["outcome"] == "completed", job.error_log
    assert job.status == TrainingJob.Status.COMPLETED
    assert job.evaluation["accuracy"] >= 0.93
    assert job.evaluation["test_size"] == len(snapshot.manifest["test"])
    assert job.artifact
    assert len(job.artifact_sha256) == 64
    # The breast-mass dictionary marks age and sex unused (the demo's ages are random): the model
    # has no feature for them, and one for each of its 30 measurements.
    artifact = load_artifact(job.artifact, job.artifact_sha256)
    names = list(artifact.pipeline[0].get_feature_names_out())
    assert not [name for name in names if name == "age" or name.startswith(("age_band=", "sex="))]
    assert len(artifact.numeric_features) == 30
    assert all(name.startswith("finding:") for name in artifact.numeric_features)


def test_a_job_without_a_dataset_prepares_one_and_a_too_small_one_fails_clearly(breast_mass):
    from django.contrib.auth import get_user_model

    engineer = get_user_model().objects.get(username="demo-ml-engineer")
    ModelType.objects.filter(pk=breast_mass.pk).update(min_cases_to_train=100_000)
    breast_mass.refresh_from_db()
    job = TrainingJob.submit(model_type=breast_mass, by=engineer, algorithm="logistic_regression")
    run_training_job.call(job.pk)
    job.refresh_from_db()
    assert job.status == TrainingJob.Status.FAILED
    assert "too_few_cases" in job.error_log
    assert job.artifact == ""
