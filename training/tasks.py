"""Background tasks (django.tasks). Arguments and results are plain JSON: ids, never objects.

``run_training_job`` is what a worker runs for a job. The job row is the source of truth: the
task only claims a queued job (``TrainingJob.start``), and every write it makes afterwards
carries the lease it got. When the job is cancelled or reaped, the next write raises
``LeaseLost`` and the task stops, leaving no artifact behind.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import traceback
import uuid
from typing import Any

from django.conf import settings
from django.db import DatabaseError, InterfaceError, connection, transaction
from django.tasks import task

from learning_engine.exceptions import DomainError, TransitionError
from learning_engine.periodic import ensure_scheduled, periodic_task
from training.features import model_inputs
from training.models import DatasetSnapshot, LeaseLost, TrainingJob

logger = logging.getLogger(__name__)

TRAINING_QUEUE = "training"
REAPER_SCHEDULE = "reap_stale_jobs"
BUILD_HEARTBEAT_S = 10.0  # the job's heartbeat while it prepares its dataset


def worker_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def enqueue_job(job_id: int, priority: int) -> None:
    """Put a job on the training queue (called on commit by TrainingJob). Priority -100..100."""
    result = run_training_job.using(priority=priority).enqueue(job_id)
    TrainingJob.objects.filter(pk=job_id).update(task_id=str(result.id)[:64])
    ensure_reaper_scheduled()


def enqueue_queued_job(sender: object, *, job_id: int, priority: int, **kwargs: object) -> None:
    """Receiver of ``training.signals.job_queued`` (connected in ``TrainingConfig.ready()``)."""
    enqueue_job(job_id, priority)


@task(queue_name=TRAINING_QUEUE)
def run_training_job(job_id: int) -> dict[str, Any]:
    # The manifest (every case id of the snapshot) is not needed to train: do not decode it.
    job = (
        TrainingJob.objects.select_related("model_type", "dataset").defer("dataset__manifest").filter(pk=job_id).first()
    )
    if job is None:
        return {"job": job_id, "outcome": "missing"}
    if job.status != TrainingJob.Status.QUEUED or job.executor != TrainingJob.Executor.WORKER:
        # Cancelled while queued, already taken by another worker, or an external trainer's job.
        return {"job": job_id, "outcome": "skipped", "status": job.status}
    try:
        lease = job.start(worker_id=worker_identity())
    except TransitionError:
        return {"job": job_id, "outcome": "skipped", "status": "taken"}
    logger.info("Job %s started (attempt %s, %s %s)", job.pk, job.attempts, job.model_type.slug, job.algorithm)
    try:
        return _run(job, lease)
    except LeaseLost:
        logger.info("Job %s: lease lost (cancelled or reaped); stopping.", job.pk)
        return {"job": job_id, "outcome": "stopped"}
    except Exception as exc:
        _fail(job, lease, exc)
        return {"job": job_id, "outcome": "failed"}


def _run(job: TrainingJob, lease: uuid.UUID) -> dict[str, Any]:
    from training.dataset_format import read_rows_by_split
    from training.trainer import TrainingProgress, train

    dataset = job.dataset or _prepare_dataset(job, lease)
    if dataset.status != DatasetSnapshot.Status.READY:
        raise DomainError(f"Dataset {dataset.pk} is {dataset.status}, not ready.", code="dataset_not_ready")
    minimum = job.model_type.min_cases_to_train
    if dataset.case_count < minimum:
        raise DomainError(
            f"Dataset {dataset.pk} has {dataset.case_count} cases; model type {job.model_type.slug} "
            f"needs at least {minimum} to train.",
            code="too_few_cases",
        )
    job.report_progress(lease=lease, progress=1.0, stage="Loading dataset")
    rows = read_rows_by_split(dataset)

    def report(update: TrainingProgress) -> None:
        job.report_progress(
            lease=lease, progress=update.progress, stage=update.stage, metrics=update.metrics, epoch=update.epoch
        )

    result = train(
        rows,
        algorithm=job.algorithm,
        hyperparameters=job.hyperparameters,
        report=report,
        artifact_name=f"{job.model_type.slug}-job{job.pk}-attempt{job.attempts}",
        inputs=model_inputs(job.model_type.cohort, snapshot=dataset),
    )
    try:
        job.complete(
            lease=lease,
            evaluation=result.evaluation,
            metrics=result.metrics,
            artifact=result.artifact_path or "",
            artifact_sha256=result.artifact_sha256 or "",
            training_ranges=result.training_ranges,
        )
    except LeaseLost:
        # Cancelled or reaped between the last epoch and completion: the artifact is orphaned.
        from training.artifacts import delete_artifact

        if result.artifact_path:
            delete_artifact(result.artifact_path)
        raise
    logger.info("Job %s completed: test accuracy %s", job.pk, result.evaluation.get("accuracy"))
    return {"job": job.pk, "outcome": "completed", "accuracy": result.evaluation.get("accuracy")}


def _prepare_dataset(job: TrainingJob, lease: uuid.UUID) -> DatasetSnapshot:
    """A job created without a dataset prepares a fresh snapshot first."""
    from training.datasets import build_snapshot, create_snapshot

    job.report_progress(lease=lease, progress=0.0, stage="Preparing dataset")
    snapshot = create_snapshot(job.model_type, by=job.created_by)
    # Attach before building, so the job row shows which snapshot it is waiting for.
    job._leased_update(lease, dataset=snapshot)
    last = time.monotonic()

    def heartbeat(stage: str, done: int, total: int) -> None:
        # A long build must not look like a dead worker to the reaper.
        nonlocal last
        if time.monotonic() - last >= BUILD_HEARTBEAT_S:
            job.heartbeat(lease=lease)
            last = time.monotonic()

    return build_snapshot(snapshot.pk, progress=heartbeat)


def _fail(job: TrainingJob, lease: uuid.UUID, exc: BaseException) -> None:
    if isinstance(exc, DomainError):
        reason = f"{exc.code}: {exc.message}"
    else:
        # The traceback names code locations; training reads de-identified data only, so no PHI.
        reason = f"{type(exc).__name__}: {exc}\n{''.join(traceback.format_exception(exc, limit=8))}"
    logger.warning("Job %s failed: %s", job.pk, reason.splitlines()[0])
    lost_database = isinstance(exc, DatabaseError | InterfaceError)
    # The database connection was lost (a server restart, a failover): record the failure on a
    # fresh connection, waiting for the server for up to DATABASE_OUTAGE_WAIT_SECONDS. Returning
    # earlier would not help: the worker then records the task's own result, fails the same way
    # and dies, leaving the job running until another worker's reaper finds it.
    deadline = time.monotonic() + int(settings.DATABASE_OUTAGE_WAIT_SECONDS)
    pause = 0.5
    while True:
        if lost_database and not connection.in_atomic_block:
            connection.close_if_unusable_or_obsolete()
        try:
            job.fail(lease=lease, reason=reason)
        except (LeaseLost, TransitionError):
            logger.info("Job %s: could not record the failure (lease lost).", job.pk)
        except (DatabaseError, InterfaceError):
            lost_database = True
            if time.monotonic() < deadline:
                time.sleep(pause)
                pause = min(pause * 2, 5.0)
                continue
            # Still no database: the job keeps its stale heartbeat, and the reaper requeues it.
            logger.warning("Job %s: could not record the failure (database unavailable).", job.pk)
        return


# --- The reaper's periodic chain -----------------------------------------------------------------


@periodic_task(schedule=REAPER_SCHEDULE, interval_setting="REAPER_INTERVAL_SECONDS", default_interval_seconds=30)
def reap_stale_jobs_periodically() -> dict[str, Any]:
    from training.reaper import reap_stale_jobs

    return reap_stale_jobs()


def ensure_reaper_scheduled() -> None:
    """Start the reaper chain unless one is alive (``learning_engine.periodic``)."""
    ensure_scheduled(reap_stale_jobs_periodically)


@task()
def build_dataset(snapshot_id: int) -> dict[str, Any]:
    """Build a snapshot created through the API (status building) in the background."""
    from training.datasets import build_snapshot

    snapshot = DatasetSnapshot.objects.filter(pk=snapshot_id).first()
    if snapshot is None or snapshot.status != DatasetSnapshot.Status.BUILDING:
        return {"dataset": snapshot_id, "outcome": "skipped"}
    try:
        snapshot = build_snapshot(snapshot_id)
    except DomainError as exc:
        # build_snapshot has already marked the snapshot failed with the reason.
        return {"dataset": snapshot_id, "outcome": "failed", "code": exc.code}
    return {"dataset": snapshot_id, "outcome": snapshot.status}


def enqueue_dataset_build(snapshot_id: int) -> None:
    transaction.on_commit(lambda: build_dataset.enqueue(snapshot_id))
