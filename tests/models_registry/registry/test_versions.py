"""Model versions: registration, approval (two-person rule), activation with history, archive."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from learning_engine.audit import AppendOnlyError
from learning_engine.exceptions import ConcurrentUpdate, FourEyesViolation, TransitionError
from models_registry.models import ActivationHistory, ModelVersion, PerformanceRecord, VersionTransition
from tests.models_registry.registry.factories import ModelVersionFactory
from tests.training.factories import ModelTypeFactory, TrainingJobFactory

pytestmark = pytest.mark.django_db


def test_a_completed_job_is_registered_as_v1_0_0_then_v1_1_0(engineer):
    first = ModelVersionFactory.create(created_by=engineer)
    second = ModelVersionFactory.create(created_by=engineer, job__accuracy=0.92)
    assert (first.version, second.version) == ("v1.0.0", "v1.1.0")
    assert (first.approval_status, first.deployment_status) == ("pending", "inactive")
    assert first.metrics["accuracy"] == 0.9
    record = PerformanceRecord.objects.get(version=second)
    assert (record.source, record.test_set_size, record.metrics["accuracy"]) == ("offline", 100, 0.92)


def test_registration_is_idempotent_per_job(engineer):
    version = ModelVersionFactory.create(created_by=engineer)
    assert ModelVersion.register(version.job) == version
    assert ModelVersion.objects.count() == 1


def test_a_version_and_its_offline_record_are_created_together_and_once(engineer):
    version = ModelVersionFactory.create(created_by=engineer)
    record = version.ensure_offline_record()
    assert version.ensure_offline_record() == record
    assert PerformanceRecord.objects.filter(version=version, source="offline").count() == 1

    version.performance.all().delete()  # a version registered by an older release, without one
    repaired = version.ensure_offline_record()
    assert version.job is not None
    assert (repaired.source, repaired.metrics, repaired.dataset) == ("offline", version.job.evaluation, version.dataset)


def test_registration_leaves_no_version_without_its_offline_record(engineer, monkeypatch):
    job = TrainingJobFactory.create(
        with_artifact=True, model_type=ModelTypeFactory.create(diagnosis=True), created_by=engineer
    )  # the registration hook has not run (no on_commit here)
    assert not ModelVersion.objects.filter(job=job).exists()

    def crash(*args, **kwargs):
        raise RuntimeError("the machine died between the two rows")

    monkeypatch.setattr(PerformanceRecord.objects, "create", crash)
    with pytest.raises(RuntimeError):
        ModelVersion.register(job)

    assert not ModelVersion.objects.filter(job=job).exists()


def test_the_reaper_registers_a_completed_job_whose_worker_died_before_the_registration_hook(
    engineer, django_capture_on_commit_callbacks
):
    from training.reaper import reap_stale_jobs

    # The completion committed but its on-commit registration never ran (the worker was killed).
    with django_capture_on_commit_callbacks(execute=False):
        job = TrainingJobFactory.create(
            with_artifact=True, model_type=ModelTypeFactory.create(diagnosis=True), created_by=engineer
        )
    with django_capture_on_commit_callbacks(execute=False):
        TrainingJobFactory.create(
            with_artifact=True, model_type=ModelTypeFactory.create(diagnosis=True), created_by=engineer, artifact=""
        )  # nothing to register
    assert not ModelVersion.objects.exists()

    assert reap_stale_jobs(dry_run=True).get("versions_registered") is None
    summary = reap_stale_jobs()

    assert summary["versions_registered"] == [job.pk]
    version = ModelVersion.objects.get(job=job)
    assert PerformanceRecord.objects.filter(version=version, source="offline").count() == 1
    assert reap_stale_jobs()["versions_registered"] == []


def test_a_job_completed_without_an_artifact_is_not_registered(engineer, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        TrainingJobFactory.create(
            with_artifact=True, model_type=ModelTypeFactory.create(diagnosis=True), created_by=engineer, artifact=""
        )
    assert not ModelVersion.objects.exists()


def test_the_creator_of_the_job_cannot_approve_its_version(engineer):
    version = ModelVersionFactory.create(created_by=engineer)
    with pytest.raises(FourEyesViolation):
        version.approve(by=engineer)
    version.refresh_from_db()
    assert version.approval_status == "pending"


def test_approve_and_reject_write_audit_rows_and_refuse_a_second_decision(engineer, lead):
    version = ModelVersionFactory.create(created_by=engineer)
    stale = ModelVersion.objects.get(pk=version.pk)
    version.approve(by=lead, note="Fine.")
    with pytest.raises(TransitionError):
        stale.reject(by=lead, note="Too late.")
    version.refresh_from_db()
    assert (version.approval_status, version.approved_by) == ("approved", lead)
    assert list(VersionTransition.objects.filter(version=version).values_list("from_state", "to_state")) == [
        ("", "pending"),
        ("pending", "approved"),
    ]


def test_only_an_approved_version_can_be_activated(engineer, lead):
    version = ModelVersionFactory.create(created_by=engineer)
    with pytest.raises(TransitionError) as err:
        version.activate(by=lead)
    assert err.value.code == "not_approved"


def test_activating_a_version_deactivates_the_previous_one_and_writes_history(engineer, lead):
    first = ModelVersionFactory.create(approved=True, created_by=engineer, approved_by=lead)
    second = ModelVersionFactory.create(approved=True, created_by=engineer, approved_by=lead)
    first.activate(by=lead, reason="First deployment.")
    second.activate(by=lead, reason="Better F1.")
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.deployment_status, second.deployment_status) == ("inactive", "active")
    history = list(ActivationHistory.objects.values_list("from_version__version", "to_version__version", "reason"))
    assert history == [(None, "v1.0.0", "First deployment."), ("v1.0.0", "v1.1.0", "Better F1.")]


def test_activation_bumps_the_serving_generation_on_commit(engineer, lead, django_capture_on_commit_callbacks):
    from models_registry.generation import current_generation

    version = ModelVersionFactory.create(approved=True, created_by=engineer, approved_by=lead)
    before = current_generation()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        version.activate(by=lead)
    assert current_generation() == before
    for callback in callbacks:
        callback()
    assert current_generation() == before + 1


def test_activating_an_active_version_again_is_refused(engineer, lead):
    version = ModelVersionFactory.create(approved=True, created_by=engineer, approved_by=lead)
    version.activate(by=lead)
    with pytest.raises(TransitionError):
        version.activate(by=lead)
    assert ActivationHistory.objects.count() == 1


def test_the_database_holds_one_active_version_per_model_type(engineer, lead):
    first = ModelVersionFactory.create(approved=True, created_by=engineer, approved_by=lead)
    second = ModelVersionFactory.create(approved=True, created_by=engineer, approved_by=lead)
    first.activate(by=lead)
    with pytest.raises(IntegrityError), transaction.atomic():
        ModelVersion.objects.filter(pk=second.pk).update(deployment_status="active")


def test_a_racing_activation_that_loses_is_a_409_not_a_500(engineer, lead, monkeypatch):
    first = ModelVersionFactory.create(approved=True, created_by=engineer, approved_by=lead)
    second = ModelVersionFactory.create(approved=True, created_by=engineer, approved_by=lead)
    first.activate(by=lead)
    # Simulate the other transaction's view: it did not see `first` as active (no lock on SQLite).
    from models_registry.registry import models as version_module

    monkeypatch.setattr(version_module.VersionQuerySet, "active", lambda self: self.none())
    with pytest.raises(ConcurrentUpdate):
        second.activate(by=lead)
    assert ModelVersion.objects.filter(deployment_status="active").count() == 1


def test_deactivate_then_archive(engineer, lead):
    version = ModelVersionFactory.create(approved=True, created_by=engineer, approved_by=lead)
    version.activate(by=lead)
    with pytest.raises(TransitionError):
        version.archive(by=lead)  # an active version cannot be archived
    version.deactivate(by=lead, reason="Drift.")
    version.archive(by=lead, reason="Superseded.")
    version.refresh_from_db()
    assert version.deployment_status == "archived"
    last = ActivationHistory.objects.last()
    assert last is not None
    assert last.to_version is None
    with pytest.raises(TransitionError):
        version.activate(by=lead)


def test_which_version_was_active_at_a_point_in_time(engineer, lead):
    first = ModelVersionFactory.create(approved=True, created_by=engineer, approved_by=lead)
    second = ModelVersionFactory.create(approved=True, created_by=engineer, approved_by=lead)
    kind = ModelTypeFactory.create(diagnosis=True)
    before_any = timezone.now()
    first.activate(by=lead)
    between = timezone.now()
    second.activate(by=lead)
    assert ActivationHistory.active_at(kind, before_any - dt.timedelta(seconds=1)) is None
    assert ActivationHistory.active_at(kind, between) == first
    assert ActivationHistory.active_at(kind, timezone.now()) == second


def test_activation_history_is_append_only(engineer, lead):
    version = ModelVersionFactory.create(approved=True, created_by=engineer, approved_by=lead)
    version.activate(by=lead)
    row = ActivationHistory.objects.get()
    row.reason = "Rewritten."
    with pytest.raises(AppendOnlyError):
        row.save()
    with pytest.raises(AppendOnlyError):
        row.delete()


def test_activation_history_refuses_bulk_changes_too(engineer, lead):
    version = ModelVersionFactory.create(approved=True, created_by=engineer, approved_by=lead)
    version.activate(by=lead)
    with pytest.raises(AppendOnlyError):
        ActivationHistory.objects.update(reason="Rewritten.")
    with pytest.raises(AppendOnlyError):
        ActivationHistory.objects.all().delete()
    assert ActivationHistory.objects.count() == 1
