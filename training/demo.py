"""Demo model types, created when ``load_demo`` runs (via cases.signals.demo_loaded)."""

from __future__ import annotations

from typing import Any

from training.models import ModelType

DEMO_MODEL_TYPES: list[dict[str, Any]] = [
    {
        "slug": "diagnosis",
        "name": "Respiratory diagnosis",
        "description": "Diagnosis of acute respiratory presentations from vital signs, labs and symptoms.",
        "cohort": "respiratory",
        "default_algorithm": ModelType.Algorithm.LOGISTIC_REGRESSION,
        "epoch_algorithm": ModelType.Algorithm.SGD,
        "min_cases_to_train": 200,
        "min_quality": 0.6,
    },
    {
        "slug": "breast-mass",
        "name": "Breast mass (Wisconsin diagnostic)",
        "description": "Malignant or benign breast mass from fine-needle aspirate measurements.",
        "cohort": "breast-mass",
        "default_algorithm": ModelType.Algorithm.LOGISTIC_REGRESSION,
        "epoch_algorithm": ModelType.Algorithm.MLP,
        "min_cases_to_train": 100,
        "min_quality": 0.5,
    },
]


def ensure_demo_model_types() -> list[ModelType]:
    """Create or reset the demo model types (safe to run again)."""
    types = []
    for spec in DEMO_MODEL_TYPES:
        defaults = {key: value for key, value in spec.items() if key != "slug"}
        types.append(ModelType.objects.update_or_create(slug=spec["slug"], defaults=defaults)[0])
    return types


def on_demo_loaded(sender: Any, **kwargs: Any) -> str:
    types = ensure_demo_model_types()
    return f"model types: {', '.join(t.slug for t in types)}"
