"""The registry's own evaluation of an artifact, and the upload of an external trainer's artifact.

The registry never takes a client's word for how good a model is, nor its file: an uploaded
artifact's bytes are checked here without building anything from them (sha256, zip limits, trusted
types: ``training.artifacts``), then loaded, structurally validated and evaluated in a separate,
resource-limited process (``training.artifact_sandbox``) on the test split of its job's dataset
snapshot (``training.evaluation.evaluate``, the metrics of the training issue), and only
that evaluation becomes the version's metrics and its "offline" performance record. What the
client reported when it completed the job is kept next to it as a "reported" record, never used
for a decision.

Slow work (reading the snapshot, the sandboxed evaluation) happens before any transaction opens;
the registration itself is one short transaction. A refused upload writes an ``ArtifactRejection``
(job, sha256, code, uploader) and leaves the job completed and unregistered, so a corrected
artifact can follow; after ``ARTIFACT_UPLOAD_MAX_ATTEMPTS`` refusals the job takes no more
(409 ``upload_attempts_exhausted``), and the route is throttled per user
(``THROTTLE_ARTIFACT_UPLOAD_RATE``). See docs/artifacts.md.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction

from learning_engine.exceptions import DomainError, InvalidRequest, TransitionError
from models_registry.registry.models import ArtifactRejection, ModelVersion, PerformanceRecord, headline_metrics
from training.artifact_sandbox import evaluate_in_sandbox
from training.artifacts import (
    DIRECTORY,
    EXTENSION,
    ArtifactError,
    ModelArtifact,
    check_artifact_bytes,
    delete_artifact,
    sha256_of,
)
from training.dataset_format import DatasetFileChanged, read_bytes, read_rows_by_split
from training.evaluation import evaluate, plain
from training.models import DatasetSnapshot, ModelType, TrainingJob
from training.ranges import snapshot_training_ranges

if TYPE_CHECKING:
    from learning_engine.actors import Actor

logger = logging.getLogger(__name__)

# A version label a client may choose: it appears in URLs (model-types/{slug}/versions/{label}/).
LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,31}$")
# Labels that would collide with a route under versions/.
RESERVED_LABELS = frozenset({"upload"})
# Single-row latency calls of the registry's evaluation: the number is informative only, and
# each call is a full predict on the request's time.
LATENCY_CALLS = 20


def holdout_rows(snapshot: DatasetSnapshot) -> Sequence[Mapping[str, Any]]:
    """The test split of a ready snapshot (its file's sha256 checked), as dataset rows.

    Raises ``DomainError`` (409) with a code when the snapshot cannot serve: not ready
    (``dataset_not_ready``), its file changed (``dataset_file_changed``) or gone
    (``dataset_file_missing``), or an empty test split (``empty_test_split``).
    """
    if snapshot.status != DatasetSnapshot.Status.READY:
        raise DomainError(
            f"Dataset {snapshot.pk} is {snapshot.status}; only a ready snapshot has a test split.",
            code="dataset_not_ready",
        )
    try:
        rows = read_rows_by_split(snapshot).get("test")
    except DatasetFileChanged as exc:
        raise DomainError(str(exc), code="dataset_file_changed") from None
    except (OSError, ValueError):
        # ValueError: a FileField without a file; OSError: the file is gone from storage.
        logger.error("Dataset %s is ready but its file %r cannot be read", snapshot.pk, snapshot.file.name)
        raise DomainError(f"Dataset {snapshot.pk}'s file cannot be read.", code="dataset_file_missing") from None
    if rows is None or not len(rows):
        raise DomainError(f"Dataset {snapshot.pk} has an empty test split.", code="empty_test_split")
    return rows


def evaluate_artifact(
    artifact: ModelArtifact, snapshot: DatasetSnapshot, *, rows: Sequence[Mapping[str, Any]] | None = None
) -> dict[str, Any]:
    """The full evaluation (``training.evaluation.evaluate``) of ``artifact`` on the snapshot's test split."""
    rows = holdout_rows(snapshot) if rows is None else rows
    result = evaluate(artifact.pipeline, rows, numeric_features=artifact.numeric_features, latency_calls=LATENCY_CALLS)
    return plain({**result, "dataset": snapshot.pk, "evaluated_by": "registry"})


def _refuse_upload(job: TrainingJob, *, sha256: str, error: ArtifactError, by: Actor) -> InvalidRequest:
    """The audit row of a refused upload (``ArtifactRejection`` with the job and the bytes' sha256,
    no version) and the 400 to raise, with the refusal's code."""
    code = error.code or "artifact_invalid"
    ArtifactRejection.objects.create(
        version=None,
        job=job,
        sha256=sha256,
        code=code[:32],
        detail=error.message[:2000],
        purpose="upload",
        actor=by if getattr(by, "pk", None) else None,
    )
    logger.warning("Refused an artifact upload for job %s (%s): %s", job.pk, code, error.message[:300])
    return InvalidRequest(error.message, code=code, **error.extra)


def _check_attempts(job: TrainingJob) -> None:
    limit = settings.ARTIFACT_UPLOAD_MAX_ATTEMPTS
    refused = ArtifactRejection.objects.filter(job=job, purpose="upload").count()
    if refused >= limit:
        raise DomainError(
            f"Job {job.pk} has had {refused} refused uploads, the limit; start a new job for another artifact.",
            code="upload_attempts_exhausted",
        )


def _check_job(job: TrainingJob) -> None:
    if job.executor != TrainingJob.Executor.EXTERNAL:
        raise DomainError(
            f"Job {job.pk} is run by the built-in worker, which registers its own artifact.", code="worker_job"
        )
    if job.status != TrainingJob.Status.COMPLETED:
        raise TransitionError(
            f"Job {job.pk} is {job.status}; upload its artifact after completing it.",
            code="job_not_completed",
            current_status=job.status,
        )
    if ModelVersion.objects.filter(job=job).exists():
        raise DomainError(f"Job {job.pk} already has a registered version.", code="already_registered")
    if job.dataset_id is None:
        raise DomainError(f"Job {job.pk} has no dataset to evaluate on.", code="no_dataset")


def register_upload(
    model_type: ModelType, *, job_id: int, data: bytes, by: Actor, label: str | None = None
) -> ModelVersion:
    """Register an external trainer's artifact for its completed job, evaluated by the registry.

    Order: check the job (exists for this model type: else 400 ``unknown_job``; external,
    completed, not registered yet, with a dataset, fewer than ``ARTIFACT_UPLOAD_MAX_ATTEMPTS``
    refused uploads: else 409), check the bytes (400 ``artifact_too_large`` /
    ``artifact_untrusted`` / ``artifact_invalid``), load, validate and evaluate them on the
    dataset's test split in the sandbox (400 ``artifact_invalid`` when refused or when the child
    crashes or exceeds a limit, ``artifact_unusable`` when the model cannot predict the rows,
    ``artifact_too_slow`` when its median single-row prediction is above ``ARTIFACT_MAX_PREDICT_MS``);
    every 400 leaves an ``ArtifactRejection``. Then store the bytes and register the version
    with the registry's metrics, its validation record, an "offline" performance record and,
    when the client reported metrics, a "reported" one.
    """
    job = (
        TrainingJob.objects.select_related("dataset", "model_type", "created_by")
        .filter(pk=job_id, model_type=model_type)
        .first()
    )
    if job is None:
        raise InvalidRequest(f"{model_type.slug} has no training job {job_id}.", code="unknown_job")
    _check_job(job)
    if label is not None and (not LABEL.match(label) or label.lower() in RESERVED_LABELS):
        raise InvalidRequest(f"{label!r} is not a usable version label.", code="invalid_label")
    assert job.dataset is not None  # _check_job
    _check_attempts(job)
    rows = holdout_rows(job.dataset)  # before anything else: a snapshot that cannot serve fails fast
    sha256 = sha256_of(data)
    try:
        # In this process only what builds no object from the bytes: sha256, zip limits, types.
        check_artifact_bytes(data, sha256)
        # Deserialising, validating and predicting happen in a resource-limited child process.
        result = evaluate_in_sandbox(data, sha256, read_bytes(job.dataset), latency_calls=LATENCY_CALLS)
    except ArtifactError as exc:
        raise _refuse_upload(job, sha256=sha256, error=exc, by=by) from None
    except DatasetFileChanged as exc:
        raise DomainError(str(exc), code="dataset_file_changed") from None
    evaluation = plain({**result.evaluation, "dataset": job.dataset.pk, "evaluated_by": "registry"})
    ranges = _train_ranges(job.dataset)

    path = default_storage.save(
        f"{DIRECTORY}/{model_type.slug}-job{job.pk}-{sha256[:12]}{EXTENSION}", ContentFile(data)
    )
    try:
        with transaction.atomic():
            version = ModelVersion.register(
                job,
                version=label,
                metrics=headline_metrics(evaluation),
                artifact=path,
                artifact_sha256=sha256,
                actor=by,  # the uploader: the two-person rule refuses them as approver
                reason=f"Artifact of external job {job.pk} uploaded by {by}; evaluated by the registry.",
                validation={**result.validation, "sandbox": True, "by": "upload"},
                training_ranges=ranges,
                evaluation=evaluation,
                test_set_size=int(evaluation.get("test_size") or len(rows)),
            )
            if version.artifact != path:  # a concurrent upload for the same job registered first
                raise DomainError(f"Job {job.pk} already has a registered version.", code="already_registered")
            reported = (job.evaluation or {}).get("reported_by_client")
            if isinstance(reported, dict) and reported:
                PerformanceRecord.objects.create(
                    version=version,
                    source=PerformanceRecord.Source.REPORTED,
                    dataset=job.dataset,
                    metrics=reported,
                    test_set_size=_reported_size(reported),
                )
    except BaseException:
        delete_artifact(path)  # nothing refers to it
        raise
    logger.info("Registered uploaded %s %s from job %s", model_type.slug, version.version, job.pk)
    return version


def _train_ranges(snapshot: DatasetSnapshot) -> dict[str, Any]:
    """The snapshot's train split's ranges (``training.ranges``): the client trained on that split.
    {} when the split is empty; the file was read and checked moments ago (``holdout_rows``)."""
    try:
        return snapshot_training_ranges(snapshot)
    except DatasetFileChanged as exc:
        raise DomainError(str(exc), code="dataset_file_changed") from None


def _reported_size(metrics: Mapping[str, Any]) -> int:
    for key in ("test_set_size", "test_size", "n"):
        value = metrics.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**31:
            return value
    return 0
