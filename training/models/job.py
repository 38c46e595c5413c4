"""Training jobs: the priority queue's rows and their lifecycle.

The job row, not the task queue, is the source of truth for status, progress, heartbeat and
cancellation. Concurrency policy:

- Every transition is a conditional UPDATE on the status it expects (``claim``), so two requests
  (or a request and a worker) racing on one job cannot both win, on SQLite or PostgreSQL.
- A worker that starts a job takes a fresh ``lease`` (a UUID). Every write a worker makes
  (progress, heartbeat, completion, failure) is conditional on ``status=running`` *and* its
  lease. Cancelling, or the reaper requeueing a stale job, clears the lease, so a cancelled or
  reaped worker's late writes match no row and are refused with ``LeaseLost``.
- Side effects (enqueueing the task, announcing completion) run on commit.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any, ClassVar

from django.conf import settings
from django.db import models, transaction
from django.utils import timezone

from alerts.events import EventType, emit, safe_label
from learning_engine.audit import AuditEntry
from learning_engine.exceptions import DomainError, TransitionError
from learning_engine.transitions import check_allowed, claim
from training.signals import job_completed, job_queued

if TYPE_CHECKING:
    from learning_engine.actors import Actor, SystemActor


class LeaseLost(DomainError):
    """The worker no longer holds this job (cancelled, reaped or finished elsewhere)."""

    code = "lease_lost"


MAX_HISTORY = 1000  # = the largest "epochs" in training.algorithms.SPECS


class AttemptsExhausted(DomainError):
    code = "attempts_exhausted"


class TrainingJob(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        COMPLETED = "completed", "Completed"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    class Executor(models.TextChoices):
        WORKER = "worker", "Built-in worker"
        EXTERNAL = "external", "External trainer (API)"

    # Allowed source states per target: the one table of the job lifecycle.
    TRANSITIONS: ClassVar[dict[str, frozenset[str]]] = {
        Status.RUNNING: frozenset({Status.QUEUED}),
        Status.COMPLETED: frozenset({Status.RUNNING}),
        Status.FAILED: frozenset({Status.QUEUED, Status.RUNNING}),
        Status.CANCELLED: frozenset({Status.QUEUED, Status.RUNNING}),
        Status.QUEUED: frozenset({Status.FAILED, Status.RUNNING}),  # retry; the reaper's requeue
    }
    FINISHED: ClassVar[frozenset[str]] = frozenset({Status.COMPLETED, Status.FAILED, Status.CANCELLED})

    model_type = models.ForeignKey("training.ModelType", on_delete=models.PROTECT, related_name="jobs")
    dataset = models.ForeignKey(
        "training.DatasetSnapshot",
        on_delete=models.PROTECT,
        related_name="jobs",
        null=True,
        blank=True,
        help_text="Empty at creation: the job prepares a fresh snapshot first.",
    )
    algorithm = models.CharField(max_length=32)
    hyperparameters = models.JSONField(default=dict, blank=True)
    priority = models.SmallIntegerField(default=0, help_text="-100 (last) .. 100 (first).")
    executor = models.CharField(max_length=16, choices=Executor.choices, default=Executor.WORKER)

    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED, editable=False)
    progress = models.FloatField(default=0.0, editable=False)
    stage = models.CharField(max_length=200, blank=True, editable=False)
    metrics = models.JSONField(default=dict, blank=True, editable=False, help_text="The latest metrics.")
    history = models.JSONField(default=list, blank=True, editable=False, help_text="One entry per epoch.")
    evaluation = models.JSONField(default=dict, blank=True, editable=False, help_text="Test-split evaluation.")
    # Per numeric model input, the min and max of the train split (``training.ranges``), as the
    # built-in worker measured them; the registered version keeps them (predict's out_of_range).
    training_ranges = models.JSONField(
        default=dict, blank=True, editable=False, help_text='{"findings.<key>" or "age": {"min": x, "max": y}}'
    )
    error_log = models.TextField(blank=True, editable=False)

    attempts = models.PositiveSmallIntegerField(default=0, editable=False)
    max_attempts = models.PositiveSmallIntegerField(default=3)
    lease = models.UUIDField(null=True, blank=True, editable=False)
    worker_id = models.CharField(max_length=200, blank=True, editable=False)
    heartbeat_at = models.DateTimeField(null=True, blank=True, editable=False)
    task_id = models.CharField(max_length=64, blank=True, editable=False)

    artifact = models.CharField(max_length=500, blank=True, editable=False, help_text="Path in the default storage.")
    artifact_sha256 = models.CharField(max_length=64, blank=True, editable=False)
    artifact_format = models.CharField(max_length=16, blank=True, editable=False)

    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="training_jobs")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True, editable=False)
    finished_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status", "heartbeat_at"], name="job_status_heartbeat")]
        permissions = [
            ("report_trainingjob", "Can drive a job as an external trainer (start, progress, complete, fail)")
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(priority__gte=-100) & models.Q(priority__lte=100), name="job_priority_range"
            ),
            models.CheckConstraint(
                condition=models.Q(progress__gte=0) & models.Q(progress__lte=100), name="job_progress_0_100"
            ),
            models.CheckConstraint(condition=models.Q(max_attempts__gte=1), name="job_max_attempts_positive"),
        ]

    def __str__(self) -> str:
        return f"Job {self.pk} ({self.status})"

    # --- Predicates ------------------------------------------------------------------------------

    def can_cancel(self) -> bool:
        return self.status in self.TRANSITIONS[self.Status.CANCELLED]

    def can_retry(self) -> bool:
        return self.status == self.Status.FAILED and self.attempts < self.max_attempts

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED

    # --- Creation --------------------------------------------------------------------------------

    @classmethod
    def submit(
        cls,
        *,
        model_type: Any,
        by: Actor,
        dataset: Any = None,
        algorithm: str | None = None,
        hyperparameters: dict[str, Any] | None = None,
        priority: int = 0,
        max_attempts: int = 3,
        executor: str = Executor.WORKER,
    ) -> TrainingJob:
        """Create a job: -> queued. A worker job is enqueued on commit."""
        from training.algorithms import validate_hyperparameters

        given = dict(hyperparameters or {})
        algorithm = model_type.resolve_algorithm(algorithm, given)
        # The model type's defaults apply to its default algorithm only; another algorithm's
        # knobs would not fit.
        defaults = model_type.default_hyperparameters if algorithm == model_type.default_algorithm else {}
        hyperparameters = validate_hyperparameters(algorithm, {**defaults, **given})
        if dataset is not None and dataset.model_type_id != model_type.pk:
            raise DomainError("The dataset belongs to another model type.", code="dataset_mismatch")
        with transaction.atomic():
            job = cls.objects.create(
                model_type=model_type,
                dataset=dataset,
                algorithm=algorithm,
                hyperparameters=hyperparameters,
                priority=priority,
                max_attempts=max_attempts,
                executor=executor,
                created_by=by,
                stage="Queued",
            )
            job._audit(by=by, source="", reason="Created.")
            job._enqueue_on_commit()
        return job

    # --- Transitions -----------------------------------------------------------------------------

    def _check(self, target: str) -> None:
        check_allowed(self.TRANSITIONS, current=self.status, target=target, label=f"Job {self.pk}")

    def _audit(self, *, by: SystemActor, source: str, reason: str = "") -> None:
        JobTransition.objects.create(job=self, actor=by, from_state=source, to_state=self.status, reason=reason)

    def _enqueue_on_commit(self) -> None:
        if self.executor != self.Executor.WORKER:
            return
        job_id, priority = self.pk, self.priority
        transaction.on_commit(lambda: _enqueue(job_id, priority))

    def enqueue_again(self) -> None:
        """Put a queued worker job on the task queue once more (the admin's "start").

        For a job whose task was lost (a flushed queue, a worker machine gone before it took the
        task). Harmless for any queued job: a task only claims a job that is still queued, so a
        second task for the same job finds it taken and does nothing.
        """
        if self.status != self.Status.QUEUED:
            raise TransitionError(f"Job {self.pk} is {self.status}; only a queued job can be started.")
        if self.executor != self.Executor.WORKER:
            raise DomainError(f"Job {self.pk} belongs to an external trainer, which starts it through the API.")
        self._enqueue_on_commit()

    def start(self, *, worker_id: str, by: SystemActor = None) -> uuid.UUID:
        """queued -> running. Returns the new lease that every later write must present."""
        self._check(self.Status.RUNNING)
        lease = uuid.uuid4()
        now = timezone.now()
        with transaction.atomic():
            claim(
                self,
                expected={"status": self.Status.QUEUED},
                status=self.Status.RUNNING,
                lease=lease,
                worker_id=worker_id[:200],
                attempts=self.attempts + 1,
                started_at=now,
                heartbeat_at=now,
                finished_at=None,
                stage="Starting",
                progress=0.0,
                # A new attempt starts its curves afresh; earlier attempts live in the log and audit.
                history=[],
                metrics={},
            )
            self._audit(by=by, source=self.Status.QUEUED, reason=f"Attempt {self.attempts} on {worker_id}.")
        return lease

    def _leased_update(self, lease: uuid.UUID | str, /, **changes: Any) -> None:
        model = type(self)
        updated = model.objects.filter(pk=self.pk, status=self.Status.RUNNING, lease=lease).update(**changes)
        if updated != 1:
            raise LeaseLost(f"Job {self.pk} is no longer held by this worker (cancelled, reaped or finished).")
        for name, value in changes.items():
            setattr(self, name, value)

    def report_progress(
        self,
        *,
        lease: uuid.UUID | str,
        progress: float,
        stage: str,
        metrics: dict[str, Any] | None = None,
        epoch: dict[str, Any] | None = None,
    ) -> None:
        """A running job's progress (and heartbeat). ``epoch`` appends one history entry."""
        changes: dict[str, Any] = {
            "progress": max(0.0, min(100.0, float(progress))),
            "stage": stage[:200],
            "heartbeat_at": timezone.now(),
        }
        if metrics is not None:
            changes["metrics"] = metrics
        if epoch is not None:
            # Bounded: the most epochs a job may ask for, so a runaway reporter cannot grow the row.
            changes["history"] = [*self.history, epoch][-MAX_HISTORY:]
        self._leased_update(lease, **changes)

    def heartbeat(self, *, lease: uuid.UUID | str) -> None:
        self._leased_update(lease, heartbeat_at=timezone.now())

    def complete(
        self,
        *,
        lease: uuid.UUID | str,
        evaluation: dict[str, Any],
        artifact: str,
        artifact_sha256: str,
        metrics: dict[str, Any] | None = None,
        training_ranges: dict[str, Any] | None = None,
        by: SystemActor = None,
    ) -> None:
        """running -> completed. Announces the job (``job_completed`` signal) on commit.
        ``training_ranges``: the train split's per-input min/max (``training.ranges``), if measured."""
        self._check(self.Status.COMPLETED)
        with transaction.atomic():
            self._leased_update(
                lease,
                status=self.Status.COMPLETED,
                progress=100.0,
                stage="Completed",
                evaluation=evaluation,
                metrics=metrics if metrics is not None else self.metrics,
                training_ranges=training_ranges or {},
                artifact=artifact,
                artifact_sha256=artifact_sha256,
                artifact_format="skops" if artifact else "",
                finished_at=timezone.now(),
                lease=None,
            )
            self._audit(by=by, source=self.Status.RUNNING)
            job_id = self.pk
            transaction.on_commit(lambda: _announce_completed(job_id))

    def fail(self, *, reason: str, lease: uuid.UUID | str | None = None, by: SystemActor = None) -> None:
        """running -> failed (with the worker's lease), or queued -> failed (a job that cannot run)."""
        self._check(self.Status.FAILED)
        changes = {
            "status": self.Status.FAILED,
            "error_log": _append_log(self.error_log, reason),
            "stage": "Failed",
            "finished_at": timezone.now(),
            "lease": None,
        }
        source = self.status
        with transaction.atomic():
            if source == self.Status.RUNNING:
                if lease is None:
                    raise LeaseLost(f"Job {self.pk} is running; only its worker (with the lease) can fail it.")
                self._leased_update(lease, **changes)
            else:
                claim(self, expected={"status": source}, **changes)
            self._audit(by=by, source=source, reason=reason[:2000])
            self._alert_failed(how="reported by its worker" if source == self.Status.RUNNING else "could not run")

    def cancel(self, *, by: Actor, reason: str = "") -> None:
        """queued | running -> cancelled. A running worker sees its lease gone at the next epoch."""
        self._check(self.Status.CANCELLED)
        source = self.status
        with transaction.atomic():
            claim(
                self,
                expected={"status": source},
                status=self.Status.CANCELLED,
                stage="Cancelled",
                lease=None,
                finished_at=timezone.now(),
            )
            self._audit(by=by, source=source, reason=reason or "Cancelled.")

    def retry(self, *, by: Actor) -> None:
        """failed -> queued while attempts remain. Enqueued again on commit."""
        self._check(self.Status.QUEUED)
        if self.status != self.Status.FAILED:
            raise TransitionError(f"Job {self.pk} is {self.status}; only a failed job can be retried.")
        if self.attempts >= self.max_attempts:
            raise AttemptsExhausted(f"Job {self.pk} has used all {self.max_attempts} attempts.")
        with transaction.atomic():
            claim(
                self,
                expected={"status": self.Status.FAILED, "attempts": self.attempts},
                status=self.Status.QUEUED,
                stage="Queued (retry)",
                progress=0.0,
                finished_at=None,
            )
            self._audit(by=by, source=self.Status.FAILED, reason="Retried.")
            self._enqueue_on_commit()

    def reap(self, *, stale_before: Any) -> str:
        """A running job whose heartbeat stopped: requeue while attempts remain, else fail.

        The condition on the heartbeat makes this safe against a worker that heartbeats between
        the reaper's read and its write. Returns the new status.
        """
        requeue = self.attempts < self.max_attempts
        target = self.Status.QUEUED if requeue else self.Status.FAILED
        reason = f"Heartbeat older than the stale limit (worker {self.worker_id or 'unknown'}); " + (
            "requeued." if requeue else f"failed after {self.attempts} attempts."
        )
        with transaction.atomic():
            claim(
                self,
                expected={"status": self.Status.RUNNING, "heartbeat_at__lt": stale_before, "lease": self.lease},
                status=target,
                lease=None,
                stage="Queued (requeued by the reaper)" if requeue else "Failed",
                error_log=_append_log(self.error_log, reason),
                finished_at=None if requeue else timezone.now(),
            )
            self._audit(by=None, source=self.Status.RUNNING, reason=reason)
            if requeue:
                self._enqueue_on_commit()
            else:
                self._alert_failed(how="its worker stopped")
        return target

    def _alert_failed(self, *, how: str) -> None:
        """A ``job.failed`` alert, recorded if the failure commits. The error text stays on the job
        (it may quote data); the alert carries ids and counts."""
        emit(
            EventType.JOB_FAILED,
            model_type=self.model_type,
            summary=f"Training job {self.pk} failed ({how}) after {self.attempts} of {self.max_attempts} attempts",
            data={
                "job": self.pk,
                "dataset": self.dataset_id,
                "algorithm": safe_label(self.algorithm),
                "attempts": self.attempts,
                "max_attempts": self.max_attempts,
                "retryable": self.attempts < self.max_attempts,
            },
        )


def _append_log(log: str, line: str) -> str:
    stamp = timezone.now().isoformat(timespec="seconds")
    text = f"{log}\n[{stamp}] {line}" if log else f"[{stamp}] {line}"
    return text[-20_000:]  # bounded: a job retried forever must not grow the row forever


def _enqueue(job_id: int, priority: int) -> None:
    # A signal, not an import: training.tasks (which imports this model) puts the job on the queue.
    job_queued.send(sender=TrainingJob, job_id=job_id, priority=priority)


def _announce_completed(job_id: int) -> None:
    job_completed.send(sender=TrainingJob, job_id=job_id)


class JobTransition(AuditEntry):
    job = models.ForeignKey(TrainingJob, on_delete=models.PROTECT, related_name="transitions")

    class Meta(AuditEntry.Meta):
        verbose_name = "training job transition"
