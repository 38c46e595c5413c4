"""A completed training job becomes a model version (listening to training's signal)."""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger(__name__)


def register_completed_job(sender: Any, job_id: int, **kwargs: Any) -> None:
    from models_registry.models import ModelVersion, PerformanceRecord
    from training.models import TrainingJob

    job = TrainingJob.objects.select_related("model_type", "dataset", "created_by").get(pk=job_id)
    if job.status != TrainingJob.Status.COMPLETED or not job.artifact:
        # An external trainer's completion without an artifact: nothing to serve, nothing to register.
        return
    version = ModelVersion.register(job)
    if not version.performance.filter(source=PerformanceRecord.Source.OFFLINE).exists():
        PerformanceRecord.objects.create(
            version=version,
            source=PerformanceRecord.Source.OFFLINE,
            dataset=job.dataset,
            metrics=job.evaluation,
            test_set_size=int(job.evaluation.get("test_size") or 0),
        )
    logger.info("Registered %s %s from job %s", job.model_type.slug, version.version, job.pk)
