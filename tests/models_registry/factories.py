"""A completed job the registry registers, without training anything."""

from __future__ import annotations

from typing import Any

from tests.training.factories import ModelTypeFactory
from training.models import ModelType, TrainingJob


def completed_job(
    *, by: Any, model_type_: ModelType | None = None, accuracy: float = 0.9, artifact: str = "models/x.skops"
) -> TrainingJob:
    """A job driven through its real transitions to completed (the registry registers it on commit)."""
    job = TrainingJob.submit(
        model_type=model_type_ or ModelTypeFactory.create(diagnosis=True), by=by, algorithm="logistic_regression"
    )
    lease = job.start(worker_id="test")
    job.complete(
        lease=lease,
        evaluation={"accuracy": accuracy, "f1_macro": accuracy - 0.01, "test_size": 100},
        artifact=artifact,
        artifact_sha256="a" * 64,
    )
    return job
