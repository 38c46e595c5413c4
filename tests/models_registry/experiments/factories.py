"""A/B test factories: two approved versions, a running test, and logged predictions with feedback.

    a, b = version_pair(engineer=..., lead=...)      A active, B approved (ModelVersionFactory: no real artifacts)
    test = start_test(a, b, by=engineer)             a running split test, 50/50, 168 h
    log_arm(test, "b", predicted=300, labelled=300, correct=270, by=client)

``log_arm`` writes prediction rows as the serving path would (arm, test, a subject pseudonym per
row unless ``unkeyed``) and feedback on the first ``labelled`` of them, ``correct`` of those right.
Rows are bulk-inserted: figures for hundreds of predictions without hundreds of requests.
"""

from __future__ import annotations

import hashlib
from typing import Any

from django.test import TestCase

from learning_engine import roles
from models_registry.models import ABTest, Feedback, ModelVersion, Prediction
from tests.factories import user_with_role
from tests.models_registry.registry.factories import ModelVersionFactory
from tests.training.factories import ModelTypeFactory
from training.models import ModelType

RIGHT = "J18.9"
WRONG = "J06.9"


def version_pair(
    *, engineer: Any = None, lead: Any = None, model_type: ModelType | None = None
) -> tuple[ModelVersion, ModelVersion]:
    """A (approved, active) and B (approved, inactive) of one model type, without artifacts."""
    engineer = engineer or user_with_role(roles.ML_ENGINEER)
    lead = lead or user_with_role(roles.CLINICAL_LEAD)
    model_type = model_type or ModelTypeFactory.create(diagnosis=True)
    a = ModelVersionFactory.create(active=True, created_by=engineer, approved_by=lead, model_type=model_type)
    b = ModelVersionFactory.create(approved=True, created_by=engineer, approved_by=lead, model_type=model_type)
    return a, b


def start_test(a: ModelVersion, b: ModelVersion, *, by: Any, **kwargs: Any) -> ABTest:
    """A running test of ``a`` against ``b`` (on-commit side effects run, as after a real commit)."""
    setup: dict[str, Any] = {"traffic_split": 0.5, "duration_hours": 168, **kwargs}
    with TestCase.captureOnCommitCallbacks(execute=True):
        return ABTest.start(model_type=a.model_type, version_a=a, version_b=b, by=by, **setup)


def log_arm(
    test: ABTest,
    arm: str,
    *,
    predicted: int,
    by: Any,
    labelled: int = 0,
    correct: int = 0,
    unkeyed: bool = False,
    subjects: int | None = None,
    latency_ms: float = 5.0,
    given_by: Any = None,
) -> list[Prediction]:
    """``predicted`` rows of ``arm`` (distinct subjects unless ``subjects`` bounds them), with feedback."""
    version = test.version_a if arm == "a" else test.version_b
    rows = []
    for index in range(predicted):
        key = f"{arm}-{test.pk}-{index % subjects if subjects else index}"
        subject = "" if unkeyed else hashlib.sha256(key.encode()).hexdigest()
        rows.append(
            Prediction(
                model_type_id=test.model_type_id,
                version=version,
                arm=arm,
                ab_test=test,
                subject_pseudonym=subject,
                input_sha256="0" * 64,
                predicted_code=RIGHT,
                probabilities={RIGHT: 0.8, WRONG: 0.2},
                latency_ms=latency_ms + index % 10,
                requested_by=by,
            )
        )
    made = Prediction.objects.bulk_create(rows)
    give_feedback(made[:labelled], correct=correct, by=given_by or by)
    return made


def give_feedback(predictions: list[Prediction], *, correct: int, by: Any) -> None:
    """Feedback on ``predictions``: the first ``correct`` confirmed as predicted, the rest not."""
    Feedback.objects.bulk_create(
        Feedback(
            prediction=prediction,
            diagnosis_code=prediction.predicted_code if index < correct else WRONG,
            correct=index < correct,
            given_by=by,
        )
        for index, prediction in enumerate(predictions)
    )
