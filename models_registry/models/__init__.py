from __future__ import annotations

from models_registry.models.prediction import Feedback, Prediction
from models_registry.models.version import (
    ActivationHistory,
    ModelVersion,
    PerformanceRecord,
    VersionTransition,
)

__all__ = [
    "ActivationHistory",
    "Feedback",
    "ModelVersion",
    "PerformanceRecord",
    "Prediction",
    "VersionTransition",
]
