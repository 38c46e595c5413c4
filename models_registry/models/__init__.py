"""The models Django loads for the app ``models_registry``, each defined in its subsystem's package.

The app is one Django app in three layers (``registry`` < ``serving`` < ``experiments``, see the
README's Layout), and each layer's models live with its code: ``registry.models`` (versions, their
offline performance, transitions, activation history, artifact rejections), ``serving.models`` (the
prediction log, feedback, client sources), ``experiments.models`` (A/B tests). Django finds a
model's app by its module path, so the app label, model and table names stay ``models_registry``'s.

This package only re-exports them, for Django and for code outside the app: it sits above all three
layers, so code inside them imports its models from the sub-package, never from here.
"""

from __future__ import annotations

from models_registry.experiments.models import ABTest, ABTestTransition
from models_registry.registry.models import (
    ActivationHistory,
    ArtifactRejection,
    ModelVersion,
    PerformanceRecord,
    VersionTransition,
)
from models_registry.serving.models import ClientSource, Feedback, Prediction

__all__ = [
    "ABTest",
    "ABTestTransition",
    "ActivationHistory",
    "ArtifactRejection",
    "ClientSource",
    "Feedback",
    "ModelVersion",
    "PerformanceRecord",
    "Prediction",
    "VersionTransition",
]
