"""The events the engine emits itself: a failed training job, a concluded A/B test, a rollback."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from alerts.models import AlertEvent
from learning_engine.exceptions import TransitionError
from models_registry.models import ModelVersion
from tests.models_registry.experiments.factories import log_arm, start_test, version_pair
from training.models import ModelType, TrainingJob
from training.reaper import reap_stale_jobs

pytestmark = pytest.mark.django_db


@pytest.fixture
def model_type():
    return ModelType.objects.create(
        slug="diagnosis", name="Respiratory diagnosis", cohort="respiratory", default_algorithm="logistic_regression"
    )


def test_a_job_its_worker_fails_emits_job_failed_with_ids_and_never_the_error_text(
    model_type, engineer, django_capture_on_commit_callbacks
):
    job = TrainingJob.submit(model_type=model_type, by=engineer)
    lease = job.start(worker_id="w1")
    with django_capture_on_commit_callbacks(execute=True):
        job.fail(lease=lease, reason="ValueError: patient John Doe MRN-7717702 has a bad value")
    event = AlertEvent.objects.get()
    assert (event.event_type, event.model_type) == ("job.failed", "diagnosis")
    assert event.summary == f"Training job {job.pk} failed (reported by its worker) after 1 of 3 attempts"
    assert event.data == {
        "job": job.pk,
        "dataset": None,
        "algorithm": "logistic_regression",
        "attempts": 1,
        "max_attempts": 3,
        "retryable": True,
    }
    assert "John" not in str(event.data) + event.summary


def test_a_job_the_reaper_fails_emits_job_failed_and_a_requeued_one_does_not(
    model_type, engineer, django_capture_on_commit_callbacks
):
    last_chance = TrainingJob.submit(model_type=model_type, by=engineer, max_attempts=1)
    retried = TrainingJob.submit(model_type=model_type, by=engineer, max_attempts=2)
    for job in (last_chance, retried):
        job.start(worker_id="dead-worker")
    TrainingJob.objects.filter(pk__in=[last_chance.pk, retried.pk]).update(
        heartbeat_at=timezone.now() - dt.timedelta(days=1)
    )
    with django_capture_on_commit_callbacks(execute=True):
        outcome = reap_stale_jobs()
    assert outcome["failed"] == [last_chance.pk]
    event = AlertEvent.objects.get()
    assert event.data["job"] == last_chance.pk
    assert event.data["retryable"] is False
    assert "its worker stopped" in event.summary


def test_a_failure_that_loses_its_race_emits_nothing(model_type, engineer, django_capture_on_commit_callbacks):
    job = TrainingJob.submit(model_type=model_type, by=engineer)
    stale_copy = TrainingJob.objects.get(pk=job.pk)
    job.cancel(by=engineer)
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(TransitionError):
        stale_copy.fail(reason="Cannot run.")
    assert not AlertEvent.objects.exists()


@pytest.mark.parametrize(
    ("correct_a", "correct_b", "decision", "promoted"), [(180, 270, "ship_b", True), (270, 180, "rollback", False)]
)
def test_concluding_an_ab_test_emits_abtest_decided(
    engineer, lead, django_capture_on_commit_callbacks, correct_a, correct_b, decision, promoted
):
    a, b = version_pair(engineer=engineer, lead=lead)
    test = start_test(a, b, by=engineer, min_labelled_per_arm=100)
    log_arm(test, "a", predicted=300, labelled=300, correct=correct_a, by=engineer)
    log_arm(test, "b", predicted=300, labelled=300, correct=correct_b, by=engineer)
    with django_capture_on_commit_callbacks(execute=True):
        test.conclude(by=lead, reason="Reviewed the figures.")
    event = AlertEvent.objects.get()
    assert (event.event_type, event.model_type) == ("abtest.decided", a.model_type.slug)
    assert event.data == {
        "ab_test": test.pk,
        "decision": decision,
        "promoted": promoted,
        "mode": "split",
        "version_a": a.pk,
        "version_b": b.pk,
        "concluded_by": lead.pk,
        "automatic": False,
    }
    kept = b if promoted else a
    assert event.summary.endswith(f"version {kept.pk} {'promoted' if promoted else 'kept'}")


def test_stopping_an_ab_test_emits_nothing(engineer, lead, django_capture_on_commit_callbacks):
    a, b = version_pair(engineer=engineer, lead=lead)
    test = start_test(a, b, by=engineer)
    with django_capture_on_commit_callbacks(execute=True):
        test.stop(by=lead, reason="Wrong set-up.")
    assert not AlertEvent.objects.exists()


def test_a_rollback_emits_version_rolled_back(engineer, lead, django_capture_on_commit_callbacks):
    a, b = version_pair(engineer=engineer, lead=lead)
    b.activate(by=lead, reason="Second.")
    with django_capture_on_commit_callbacks(execute=True):
        target = ModelVersion.rollback(a.model_type, by=lead, reason="Complaints from the ward.")
    assert target == a
    event = AlertEvent.objects.get()
    assert (event.event_type, event.model_type) == ("version.rolled_back", a.model_type.slug)
    assert event.summary == f"Rolled back from version {b.pk} to version {a.pk}"
    assert event.data == {
        "from_version": b.pk,
        "from_label": b.version,
        "to_version": a.pk,
        "to_label": a.version,
        "by": lead.pk,
    }


def test_a_version_label_that_is_not_of_the_alert_shape_is_left_out_and_the_rollback_happens(
    engineer, lead, django_capture_on_commit_callbacks
):
    a, b = version_pair(engineer=engineer, lead=lead)
    ModelVersion.objects.filter(pk=a.pk).update(version="retrained 2026-01-01")
    b.activate(by=lead, reason="Second.")
    with django_capture_on_commit_callbacks(execute=True):
        ModelVersion.rollback(a.model_type, by=lead)
    assert ModelVersion.objects.active().get().pk == a.pk
    assert AlertEvent.objects.get().data["to_label"] is None


def test_a_refused_rollback_emits_nothing(engineer, lead, django_capture_on_commit_callbacks):
    a, _b = version_pair(engineer=engineer, lead=lead)
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(TransitionError):
        ModelVersion.rollback(a.model_type, by=lead)
    assert not AlertEvent.objects.exists()
