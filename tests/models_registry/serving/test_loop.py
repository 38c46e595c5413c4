"""The whole self-learning loop on the demo data, through the API where a client would use it:
train, register, approve, activate, predict, feedback, live accuracy, new case for review."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import TestCase

from cases.demo import respiratory_records
from cases.models import Case
from models_registry.models import ModelVersion, PerformanceRecord
from tests.conftest import jwt_client
from training.datasets import build_snapshot, create_snapshot
from training.models import ModelType, TrainingJob
from training.tasks import run_training_job

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_serving")]


@pytest.fixture
def demo(settings):
    settings.DEBUG = True  # load_demo refuses to run without it (published passwords)
    call_command("load_demo", "--respiratory-cases", "400", verbosity=0)
    return {user.username: user for user in get_user_model().objects.filter(username__startswith="demo-")}


def test_train_register_approve_activate_predict_feedback_and_a_new_case(demo):
    diagnosis = ModelType.objects.get(slug="diagnosis")
    engineer, lead = demo["demo-ml-engineer"], demo["demo-clinical-lead"]

    # Train: a snapshot of the approved demo cases, a job run by the task; registered on commit.
    snapshot = build_snapshot(create_snapshot(diagnosis, by=engineer, seed=3).pk)
    with TestCase.captureOnCommitCallbacks(execute=True):
        job = TrainingJob.submit(model_type=diagnosis, by=engineer, dataset=snapshot, algorithm="logistic_regression")
        run_training_job.call(job.pk)
    job.refresh_from_db()
    assert job.status == TrainingJob.Status.COMPLETED, job.error_log
    version = ModelVersion.objects.get(job=job)
    assert PerformanceRecord.objects.filter(version=version, source="offline").exists()

    # Approve and activate: a clinical lead, not the engineer who trained it.
    with TestCase.captureOnCommitCallbacks(execute=True):
        version.approve(by=lead, note="Offline evaluation reviewed.")
        version.activate(by=lead, reason="First diagnosis model.")

    # Predict: a hospital system sends a new encounter, with its patient block and encounter id.
    record = next(respiratory_records(1, seed=99))
    record["external_id"] = "loop-encounter-1"
    system = jwt_client(demo["demo-prediction-client"])
    response = system.post(
        "/api/v1/model-types/diagnosis/predict/", {**record, "subject_key": record["external_id"]}, format="json"
    )
    assert response.status_code == 200, response.json()
    answer = response.json()
    assert answer["model_version"] == version.version
    assert answer["diagnosis"]["code"] in snapshot.label_counts["train"]
    assert answer["diagnosis"]["label"] != answer["diagnosis"]["code"]  # the training data's text

    # Feedback: the clinician confirms the diagnosis and sends the case back for review.
    clinician = demo["demo-clinician"]
    confirmed = record["diagnosis"]["code"]
    feedback = jwt_client(clinician).post(
        f"/api/v1/predictions/{answer['id']}/feedback/", {"diagnosis_code": confirmed, "case": record}, format="json"
    )
    assert feedback.status_code == 201, feedback.json()
    assert feedback.json()["correct"] == (confirmed == answer["diagnosis"]["code"])

    live = PerformanceRecord.objects.get(version=version, source="live")
    assert live.metrics["with_feedback"] == 1
    assert live.metrics["accuracy"] == (1.0 if feedback.json()["correct"] else 0.0)
    case = Case.objects.get(source=record["source"], external_id=record["external_id"])
    assert (case.status, case.submitted_by, case.cohort) == (Case.Status.SUBMITTED, clinician, "respiratory")
    assert case.diagnosis_code == confirmed
