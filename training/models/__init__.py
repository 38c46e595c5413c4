from __future__ import annotations

from training.models.dataset import BuildAbandoned, DatasetSnapshot, DatasetTransition, ImmutableSnapshot
from training.models.job import AttemptsExhausted, JobTransition, LeaseLost, TrainingJob
from training.models.locked_set import LockedEvaluationSet, LockedPatient, locked_pseudonyms
from training.models.model_type import ModelType

__all__ = [
    "AttemptsExhausted",
    "BuildAbandoned",
    "DatasetSnapshot",
    "DatasetTransition",
    "ImmutableSnapshot",
    "JobTransition",
    "LeaseLost",
    "LockedEvaluationSet",
    "LockedPatient",
    "ModelType",
    "TrainingJob",
    "locked_pseudonyms",
]
