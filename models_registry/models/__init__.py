from __future__ import annotations

from models_registry.models.abtest import ABTest, ABTestTransition
from models_registry.models.prediction import ClientSource, Feedback, Prediction
from models_registry.models.version import (
    ActivationHistory,
    ModelVersion,
    PerformanceRecord,
    VersionTransition,
)

__all__ = [
    "ABTest",
    "ABTestTransition",
    "ActivationHistory",
    "ClientSource",
    "Feedback",
    "ModelVersion",
    "PerformanceRecord",
    "Prediction",
    "VersionTransition",
]
