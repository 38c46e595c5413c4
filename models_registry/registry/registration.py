"""A completed training job becomes a model version (listening to training's signal)."""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction

logger = logging.getLogger(__name__)


def register_completed_job(sender: Any, job_id: int, **kwargs: Any) -> None:
    from models_registry.registry.models import ModelVersion
    from training.models import TrainingJob

    job = TrainingJob.objects.select_related("model_type", "dataset", "created_by").get(pk=job_id)
    if job.status != TrainingJob.Status.COMPLETED or not job.artifact:
        # An external trainer's completion without an artifact: nothing to serve, nothing to register.
        return
    validation = _validation_of(job)
    # The version and its offline record commit together: a crash between them would leave a
    # version without its evaluation, which the reaper's sweep (it looks for jobs without a
    # version) would never repair. The version row lock serialises the hook and the sweep.
    with transaction.atomic():
        version = ModelVersion.register(job, validation=validation)
        version.ensure_offline_record()  # a version found registered already, by an older release
    logger.info("Registered %s %s from job %s", job.model_type.slug, version.version, job.pk)


def _validation_of(job: Any) -> dict[str, Any] | None:
    """The built-in worker's artifact, loaded with every check (``training.artifacts``): its
    validation summary, or None when it fails (the version is registered, but serving refuses it
    until ``manage.py validate_artifacts`` passes it). The worker built and evaluated this
    pipeline itself in its own process, so no sandbox is needed here."""
    from training.artifacts import ArtifactError, load_artifact

    try:
        artifact = load_artifact(job.artifact, job.artifact_sha256)
    except (ArtifactError, OSError) as exc:
        logger.error("The artifact of job %s failed validation: %s", job.pk, exc)
        return None
    return {**artifact.validation, "sandbox": False, "by": "worker"}


def register_missed_jobs(sender: Any, **kwargs: Any) -> dict[str, list[int]]:
    """The reaper's sweep: register completed jobs with an artifact that have no version yet.

    Registration runs on commit after a job completes; a worker killed in between leaves the job
    completed without its version. Registration is idempotent per job, so repeating it is safe.
    """
    from training.models import TrainingJob

    missed = (
        TrainingJob.objects.filter(status=TrainingJob.Status.COMPLETED)
        .exclude(artifact="")
        .filter(model_version__isnull=True)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    registered: list[int] = []
    for job_id in missed.iterator(chunk_size=100):
        try:
            register_completed_job(sender, job_id=job_id)
        except Exception:
            # One bad job must not stop the others (nor the reaper): it is retried next pass.
            logger.exception("Could not register the missed job %s", job_id)
            continue
        registered.append(job_id)
    return {"versions_registered": registered}
