from __future__ import annotations

from models_registry.models.abtest import ABTest, ABTestTransition
from models_registry.models.prediction import Feedback, Prediction
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
    "Feedback",
    "ModelVersion",
    "PerformanceRecord",
    "Prediction",
    "VersionTransition",
]
