"""Training job lifecycle: transitions, leases, audit, the stale-copy race, the reaper, priorities."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import cast

import pytest
from django.tasks import default_task_backend as _default_backend
from django.tasks.backends.dummy import DummyBackend
from django.utils import timezone

from learning_engine.exceptions import InvalidRequest, TransitionError
from training.models import AttemptsExhausted, JobTransition, LeaseLost, TrainingJob
from training.reaper import reap_stale_jobs
from training.signals import job_completed

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("empty_task_queue")]
default_task_backend = cast(DummyBackend, _default_backend)  # the test settings' backend


def submit(model_type, engineer, **kwargs):
    return TrainingJob.submit(model_type=model_type, by=engineer, **kwargs)


def audit(job):
    return list(JobTransition.objects.filter(job=job).values_list("from_state", "to_state"))


def training_tasks():
    return [r for r in default_task_backend.results if r.task.name == "run_training_job"]


def test_epochs_without_an_algorithm_choose_the_epoch_based_default(model_type, engineer):
    job = submit(model_type, engineer, hyperparameters={"batch_size": 32, "epochs": 10})
    assert job.status == "queued"
    assert job.algorithm == "sgd"
    assert job.hyperparameters["epochs"] == 10
    assert job.hyperparameters["batch_size"] == 32


def test_submit_refuses_unknown_hyperparameters_with_a_400(model_type, engineer):
    with pytest.raises(InvalidRequest) as err:
        submit(model_type, engineer, algorithm="logistic_regression", hyperparameters={"epochs": 3})
    assert err.value.status_code == 400
    assert not TrainingJob.objects.exists()


def test_submit_enqueues_only_on_commit(model_type, engineer, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        submit(model_type, engineer)
    assert training_tasks() == []
    for callback in callbacks:
        callback()
    assert len(training_tasks()) == 1


def test_priority_reaches_the_task_queue(model_type, engineer, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        job = submit(model_type, engineer, priority=50)
    (result,) = training_tasks()
    assert result.task.priority == 50
    assert result.args == [job.pk]
    job.refresh_from_db()
    assert job.task_id == str(result.id)


def test_start_takes_a_lease_and_counts_the_attempt(model_type, engineer):
    job = submit(model_type, engineer)
    lease = job.start(worker_id="w1")
    job.refresh_from_db()
    assert (job.status, job.lease, job.attempts, job.worker_id) == ("running", lease, 1, "w1")
    assert audit(job) == [("", "queued"), ("queued", "running")]


def test_a_stale_copy_cannot_start_a_job_a_fresher_copy_started(model_type, engineer):
    job = submit(model_type, engineer)
    stale = TrainingJob.objects.get(pk=job.pk)
    job.start(worker_id="w1")
    with pytest.raises(TransitionError):
        stale.start(worker_id="w2")
    job.refresh_from_db()
    assert job.worker_id == "w1"
    assert audit(job).count(("queued", "running")) == 1


def test_progress_requires_the_current_lease(model_type, engineer):
    job = submit(model_type, engineer)
    lease = job.start(worker_id="w1")
    job.report_progress(lease=lease, progress=50, stage="Epoch 5/10", epoch={"epoch": 5}, metrics={"loss": 0.4})
    job.refresh_from_db()
    assert (job.progress, job.stage, job.history, job.metrics) == (50, "Epoch 5/10", [{"epoch": 5}], {"loss": 0.4})
    with pytest.raises(LeaseLost):
        job.report_progress(lease=uuid.uuid4(), progress=60, stage="Epoch 6/10")
    job.refresh_from_db()
    assert job.progress == 50


def test_complete_clears_the_lease_and_announces_on_commit(model_type, engineer, django_capture_on_commit_callbacks):
    announced = []

    def receiver(sender, job_id, **kwargs):
        announced.append(job_id)

    job_completed.connect(receiver)
    try:
        job = submit(model_type, engineer)
        lease = job.start(worker_id="w1")
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            job.complete(lease=lease, evaluation={"accuracy": 0.9}, artifact="models/x.skops", artifact_sha256="ab")
        assert announced == []
        for callback in callbacks:
            callback()
        assert announced == [job.pk]
    finally:
        job_completed.disconnect(receiver)
    job.refresh_from_db()
    assert (job.status, job.progress, job.lease, job.artifact_format) == ("completed", 100, None, "skops")
    assert audit(job)[-1] == ("running", "completed")


def test_a_running_job_can_only_be_failed_by_its_lease_holder(model_type, engineer):
    job = submit(model_type, engineer)
    job.start(worker_id="w1")
    with pytest.raises(LeaseLost):
        job.fail(reason="boom")
    job.refresh_from_db()
    assert job.status == "running"


def test_fail_records_the_reason_in_the_log_and_the_audit(model_type, engineer):
    job = submit(model_type, engineer)
    lease = job.start(worker_id="w1")
    job.fail(lease=lease, reason="ValueError: bad data")
    job.refresh_from_db()
    assert job.status == "failed"
    assert "ValueError: bad data" in job.error_log
    assert JobTransition.objects.filter(job=job, to_state="failed", reason__contains="bad data").exists()


@pytest.mark.parametrize("running", [False, True])
def test_cancel_a_queued_or_running_job(model_type, engineer, running):
    job = submit(model_type, engineer)
    lease = job.start(worker_id="w1") if running else None
    job.cancel(by=engineer, reason="Wrong dataset.")
    job.refresh_from_db()
    assert (job.status, job.lease) == ("cancelled", None)
    if running:
        # The worker's next epoch report is refused: that is how it learns to stop.
        with pytest.raises(LeaseLost):
            job.report_progress(lease=lease, progress=70, stage="Epoch 7/10")


@pytest.mark.parametrize("final", ["completed", "failed", "cancelled"])
def test_finished_jobs_cannot_be_cancelled(model_type, engineer, final):
    job = submit(model_type, engineer)
    TrainingJob.objects.filter(pk=job.pk).update(status=final)
    job.refresh_from_db()
    with pytest.raises(TransitionError) as err:
        job.cancel(by=engineer)
    assert err.value.code == "invalid_transition"


def test_retry_requeues_a_failed_job_until_attempts_run_out(model_type, engineer, django_capture_on_commit_callbacks):
    job = submit(model_type, engineer, max_attempts=2)
    for attempt in (1, 2):
        lease = job.start(worker_id="w1")
        job.fail(lease=lease, reason=f"attempt {attempt} failed")
        if attempt == 1:
            with django_capture_on_commit_callbacks(execute=True):
                job.retry(by=engineer)
            assert job.status == "queued"
    with pytest.raises(AttemptsExhausted):
        job.retry(by=engineer)
    job.refresh_from_db()
    assert (job.status, job.attempts) == ("failed", 2)


def test_retry_is_refused_for_a_job_that_did_not_fail(model_type, engineer):
    job = submit(model_type, engineer)
    with pytest.raises(TransitionError):
        job.retry(by=engineer)


def _make_stale(job, seconds=3600):
    TrainingJob.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - dt.timedelta(seconds=seconds))


def test_the_reaper_requeues_a_stale_job_and_refuses_the_dead_workers_late_writes(
    model_type, engineer, django_capture_on_commit_callbacks
):
    job = submit(model_type, engineer, max_attempts=3)
    lease = job.start(worker_id="dead-worker")
    workers_copy = TrainingJob.objects.get(pk=job.pk)  # what the slow worker still holds in memory
    _make_stale(job)
    with django_capture_on_commit_callbacks(execute=True):
        summary = reap_stale_jobs()
    assert summary["requeued"] == [job.pk]
    job.refresh_from_db()
    assert (job.status, job.lease) == ("queued", None)
    assert "Heartbeat older than the stale limit" in job.error_log
    assert len(training_tasks()) == 1  # the requeue (submit's own enqueue ran outside the capture)
    with pytest.raises(LeaseLost):
        workers_copy.report_progress(lease=lease, progress=90, stage="Epoch 9/10")
    with pytest.raises(LeaseLost):
        workers_copy.complete(lease=lease, evaluation={}, artifact="", artifact_sha256="")
    job.refresh_from_db()
    assert (job.status, job.progress) == ("queued", 0.0)


def test_the_reaper_fails_a_stale_job_without_attempts_left(model_type, engineer):
    job = submit(model_type, engineer, max_attempts=1)
    job.start(worker_id="dead-worker")
    _make_stale(job)
    assert reap_stale_jobs()["failed"] == [job.pk]
    job.refresh_from_db()
    assert job.status == "failed"
    assert "failed after 1 attempts" in job.error_log


def test_the_reaper_leaves_fresh_and_finished_jobs_alone(model_type, engineer):
    fresh = submit(model_type, engineer)
    fresh.start(worker_id="alive")
    finished = submit(model_type, engineer)
    lease = finished.start(worker_id="w")
    finished.complete(lease=lease, evaluation={}, artifact="", artifact_sha256="")
    _make_stale(finished)
    assert reap_stale_jobs() == {
        "requeued": [],
        "failed": [],
        "skipped": [],
        "datasets_failed": [],
        "versions_registered": [],
    }


def _building_snapshot(model_type, *, heartbeat_age=None, age=0):
    from training.models import DatasetSnapshot

    snapshot = DatasetSnapshot.objects.create(model_type=model_type, filters={"cohort": model_type.cohort})
    now = timezone.now()
    DatasetSnapshot.objects.filter(pk=snapshot.pk).update(
        created_at=now - dt.timedelta(seconds=age),
        heartbeat_at=None if heartbeat_age is None else now - dt.timedelta(seconds=heartbeat_age),
    )
    snapshot.refresh_from_db()
    return snapshot


def test_the_reaper_fails_a_dataset_build_whose_heartbeat_stopped_and_stops_its_late_worker(model_type):
    from training.models import BuildAbandoned, DatasetTransition

    dead = _building_snapshot(model_type, heartbeat_age=3600, age=3600)
    alive = _building_snapshot(model_type, heartbeat_age=1, age=3600)
    waiting = _building_snapshot(model_type, age=3600)  # its build has not started: it may be queued
    workers_copy = type(dead).objects.get(pk=dead.pk)
    assert reap_stale_jobs()["datasets_failed"] == [dead.pk]
    dead.refresh_from_db()
    assert dead.status == "failed"
    assert "no heartbeat for more than" in dead.error
    assert DatasetTransition.objects.filter(dataset=dead, to_state="failed", reason=dead.error).exists()
    for snapshot in (alive, waiting):
        snapshot.refresh_from_db()
        assert snapshot.status == "building"
    with pytest.raises(BuildAbandoned):
        workers_copy.heartbeat()  # the slow worker's next heartbeat stops its build


def test_the_reaper_fails_a_dataset_build_that_never_started_after_the_queued_limit(model_type, settings):
    settings.DATASET_QUEUED_LIMIT_SECONDS = 600
    lost = _building_snapshot(model_type, age=3600)
    recent = _building_snapshot(model_type, age=60)
    assert reap_stale_jobs(dry_run=True)["datasets_failed"] == [lost.pk]
    lost.refresh_from_db()
    assert lost.status == "building"  # a dry run changes nothing
    assert reap_stale_jobs()["datasets_failed"] == [lost.pk]
    lost.refresh_from_db()
    recent.refresh_from_db()
    assert (lost.status, recent.status) == ("failed", "building")
    assert "never started" in lost.error


def test_a_heartbeat_between_the_reapers_read_and_write_saves_the_job(model_type, engineer):
    job = submit(model_type, engineer)
    lease = job.start(worker_id="slow-but-alive")
    _make_stale(job)
    cutoff = timezone.now() - dt.timedelta(seconds=60)
    stale_copy = TrainingJob.objects.get(pk=job.pk)
    job.heartbeat(lease=lease)
    with pytest.raises(TransitionError):
        stale_copy.reap(stale_before=cutoff)
    job.refresh_from_db()
    assert job.status == "running"


def test_the_reaper_command_has_a_dry_run(model_type, engineer):
    from io import StringIO

    from django.core.management import call_command

    job = submit(model_type, engineer)
    job.start(worker_id="dead")
    _make_stale(job)
    out = StringIO()
    call_command("reap_stale_jobs", "--dry-run", stdout=out)
    assert "1 jobs would be requeued" in out.getvalue()
    job.refresh_from_db()
    assert job.status == "running"
    call_command("reap_stale_jobs", stdout=out)
    job.refresh_from_db()
    assert job.status == "queued"


def test_the_periodic_reaper_chain_collapses_to_one(settings, django_capture_on_commit_callbacks):
    from learning_engine.models import PeriodicSchedule
    from training import tasks

    settings.REAPER_INTERVAL_SECONDS = 30
    with django_capture_on_commit_callbacks(execute=True):
        tasks.ensure_reaper_scheduled()
        tasks.ensure_reaper_scheduled()  # a second process: the live chain is kept
    chains = [r for r in default_task_backend.results if r.task.name == "reap_stale_jobs_periodically"]
    assert len(chains) == 1
    token = chains[0].args[0]
    assert tasks.reap_stale_jobs_periodically.call(token)["requeued"] == []
    assert tasks.reap_stale_jobs_periodically.call(str(uuid.uuid4())) == {"outcome": "superseded"}
    assert PeriodicSchedule.objects.get().last_run_at is not None


def test_health_reports_stale_running_jobs(model_type, engineer):
    from rest_framework.test import APIClient

    job = submit(model_type, engineer)
    job.start(worker_id="dead")
    body = APIClient().get("/api/v1/health/").json()
    assert body["checks"]["training"] == {"ok": True, "queued": 0, "running": 1, "stale_running": 0}
    _make_stale(job)
    response = APIClient().get("/api/v1/health/")
    assert response.status_code == 503
    assert response.json()["checks"]["training"]["stale_running"] == 1


def test_the_database_queue_hands_out_higher_priority_first_then_first_in_first_out(
    model_type, engineer, django_capture_on_commit_callbacks
):
    """The order db_worker claims training tasks in (django-tasks-db's ready queue)."""
    from django.tasks import task_backends
    from django_tasks_db.backend import DatabaseBackend
    from django_tasks_db.models import DBTaskResult

    dummy = task_backends["default"]
    connections = task_backends._connections  # type: ignore[attr-defined]  # the per-thread backend cache
    connections.default = DatabaseBackend(alias="default", params={"QUEUES": ["default", "training"]})
    try:
        jobs = {}
        with django_capture_on_commit_callbacks(execute=True):
            for name, priority in (("low-1", -10), ("normal-1", 0), ("urgent", 50), ("normal-2", 0), ("low-2", -10)):
                jobs[submit(model_type, engineer, priority=priority).pk] = name
    finally:
        connections.default = dummy
    queue = DBTaskResult.objects.ready().filter(queue_name="training")
    assert [jobs[row.args_kwargs["args"][0]] for row in queue] == ["urgent", "normal-1", "normal-2", "low-1", "low-2"]


def test_a_sweep_receiver_adds_to_the_reaper_summary_but_never_rewrites_its_counts(caplog):
    from training.signals import sweep

    def receiver(sender, **kwargs):
        return {"failed": ["not mine"], "extra_repairs": [7]}

    sweep.connect(receiver, dispatch_uid="test-sweep-receiver")
    try:
        summary = reap_stale_jobs()
    finally:
        sweep.disconnect(dispatch_uid="test-sweep-receiver")

    assert summary["failed"] == []
    assert summary["extra_repairs"] == [7]
    assert "'failed'" in caplog.text


@pytest.mark.parametrize("outage_checks", [2, 0])
def test_a_failure_during_a_database_outage_is_recorded_once_the_database_is_back(
    model_type, engineer, settings, monkeypatch, outage_checks
):
    from django.db import OperationalError

    from training import tasks

    settings.DATABASE_OUTAGE_WAIT_SECONDS = 30
    monkeypatch.setattr(tasks.time, "sleep", lambda seconds: None)
    job = submit(model_type, engineer)
    lease = job.start(worker_id="w")
    real_fail = TrainingJob.fail
    calls = []

    def flaky(self, **kwargs):
        calls.append(1)
        if len(calls) <= outage_checks:
            raise OperationalError("the database system is starting up")
        return real_fail(self, **kwargs)

    monkeypatch.setattr(TrainingJob, "fail", flaky)
    tasks._fail(job, lease, OperationalError("terminating connection due to administrator command"))

    job.refresh_from_db()
    assert len(calls) == outage_checks + 1
    assert job.status == "failed"
    assert "terminating connection" in job.error_log


def test_a_failure_is_left_to_the_reaper_when_the_database_stays_away(model_type, engineer, settings, monkeypatch):
    from django.db import OperationalError

    from training import tasks

    settings.DATABASE_OUTAGE_WAIT_SECONDS = 0
    job = submit(model_type, engineer)
    lease = job.start(worker_id="w")

    def down(self, **kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr(TrainingJob, "fail", down)
    tasks._fail(job, lease, OperationalError("terminating connection"))

    job.refresh_from_db()
    assert job.status == "running"  # the stale heartbeat lets the reaper requeue it


# --- What the worker trains on ---------------------------------------------------------------------


def test_the_worker_trains_on_the_inputs_of_its_snapshots_dictionary_version_not_a_newer_one():
    from cases.rows import ALL_INPUTS
    from tests.cases.dictionary_factories import published_dictionary, small_definition
    from tests.training.factories import DatasetSnapshotFactory, ModelTypeFactory
    from training.tasks import model_inputs

    model_type = ModelTypeFactory.create()
    assert model_inputs(model_type.cohort) == ALL_INPUTS  # no dictionary yet: every input, as before
    published_dictionary(model_type.cohort, definition=small_definition(demographics={"age": True, "sex": True}))
    snapshot = DatasetSnapshotFactory.create(model_type=model_type, built=True)
    published_dictionary(model_type.cohort, definition=small_definition(demographics={"age": False, "sex": False}))

    assert model_inputs(model_type.cohort, snapshot=snapshot).demographics == {"age", "sex"}
    assert model_inputs(model_type.cohort).demographics == frozenset()
