"""Serving factories: a really trained, registered, approved and active version, and records.

``served_version()`` trains a small logistic regression on synthetic rows (``training.trainer``,
artifact saved in the default storage: the test's temporary MEDIA_ROOT), completes a job with it
through the job's real transitions, lets the registry register it, has a clinical lead (not the
job's creator) approve it and, unless ``activate=False``, activate it. The on-commit side effects
(registration, the serving generation bump) run as they would after a real commit.

The records are plain enough for a two-class model to tell apart: pneumonia (fever, low SpO2,
high white cell count) and a common cold. They are complete records of the ``respiratory`` data
dictionary (the model type's cohort), since predict checks records against it.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.test import TestCase
from django.test.utils import CaptureQueriesContext

from cases.rows import ALL_INPUTS, ModelInputs
from learning_engine import roles
from models_registry.models import ModelVersion
from models_registry.serving.model_cache import MODEL_CACHE
from models_registry.serving.router import ROUTER
from tests.factories import user_with_role
from tests.training.factories import ModelTypeFactory
from training.models import ModelType, TrainingJob
from training.trainer import TrainingResult, train

PNEUMONIA = "J18.9"
COLD = "J06.9"

PNEUMONIA_FEATURES: dict[str, Any] = {
    "findings": {
        "temperature_c": 39.4,
        "heart_rate": 118,
        "respiratory_rate": 28,
        "spo2": 89,
        "systolic_bp": 105,
        "wbc": 16.2,
        "crp": 140,
        "nt_probnp": 300,
    },
    "symptoms": ["cough", "fever", "dyspnea"],
    "age": 71,
    "sex": "female",
}
COLD_FEATURES: dict[str, Any] = {
    "findings": {
        "temperature_c": 37.1,
        "heart_rate": 76,
        "respiratory_rate": 15,
        "spo2": 98,
        "systolic_bp": 122,
        "wbc": 6.8,
        "crp": 4,
        "nt_probnp": 60,
    },
    "symptoms": ["cough", "sore_throat"],
    "age": 34,
    "sex": "male",
}


def synthetic_rows(count: int, *, seed: int = 0) -> list[dict[str, Any]]:
    """Dataset-shaped rows (``training.dataset_format``), half pneumonia, half colds, with noise."""
    rng = random.Random(seed)
    rows = []
    for index in range(count):
        pneumonia = index % 2 == 0
        base = PNEUMONIA_FEATURES if pneumonia else COLD_FEATURES
        age = max(18, min(89, base["age"] + rng.randint(-15, 15)))
        rows.append(
            {
                "case_id": index + 1,
                "patient_pseudonym": f"p{index}",
                "label": PNEUMONIA if pneumonia else COLD,
                "label_text": "Pneumonia, unspecified organism" if pneumonia else "Acute upper respiratory infection",
                "age": age,
                "age_band": f"{age // 10 * 10}-{age // 10 * 10 + 9}",
                "sex": rng.choice(["female", "male"]),
                "encounter_year": 2026,
                "findings": {key: value * rng.uniform(0.97, 1.03) for key, value in base["findings"].items()},
                "symptoms": list(base["symptoms"]),
            }
        )
    return rows


def trained_result(
    *, seed: int = 0, rows: list[dict[str, Any]] | None = None, inputs: ModelInputs = ALL_INPUTS
) -> TrainingResult:
    """Train and save a model on ``rows`` (the first three quarters are the train split) and on
    ``inputs`` (every input by default)."""
    rows = rows if rows is not None else synthetic_rows(60, seed=seed)
    cut = len(rows) * 3 // 4
    result = train(
        {"train": rows[:cut], "validation": [], "test": rows[cut:]},
        algorithm="logistic_regression",
        hyperparameters={"seed": seed},
        report=lambda progress: None,
        artifact_name=f"serving-test-{uuid.uuid4().hex[:12]}",
        inputs=inputs,
    )
    assert result.artifact_path
    assert result.artifact_sha256
    return result


def trained_artifact(*, seed: int = 0, rows: list[dict[str, Any]] | None = None) -> tuple[str, str, dict[str, Any]]:
    """Train and save a model: (artifact path, sha256, evaluation)."""
    result = trained_result(seed=seed, rows=rows)
    assert result.artifact_path
    assert result.artifact_sha256
    return result.artifact_path, result.artifact_sha256, result.evaluation


def served_version(
    *,
    model_type: ModelType | None = None,
    engineer: Any = None,
    lead: Any = None,
    activate: bool = True,
    seed: int = 0,
    dataset: Any = None,
    rows: list[dict[str, Any]] | None = None,
    record_ranges: bool = True,
    inputs: ModelInputs = ALL_INPUTS,
) -> ModelVersion:
    """A registered, approved (and by default active) version with a real artifact. As the worker
    does, the job records its train split's ranges (``record_ranges=False``: a job that did not)."""
    model_type = model_type or ModelTypeFactory.create(diagnosis=True)
    engineer = engineer or user_with_role(roles.ML_ENGINEER)
    lead = lead or user_with_role(roles.CLINICAL_LEAD)
    result = trained_result(seed=seed, rows=rows, inputs=inputs)
    # Each block ends as a commit would: its on-commit callbacks (registration, then the
    # serving generation bump) run at the end of the block.
    with TestCase.captureOnCommitCallbacks(execute=True):
        job = TrainingJob.submit(model_type=model_type, by=engineer, dataset=dataset, algorithm="logistic_regression")
        lease = job.start(worker_id="serving-test")
        job.complete(
            lease=lease,
            evaluation=result.evaluation,
            artifact=result.artifact_path or "",
            artifact_sha256=result.artifact_sha256 or "",
            training_ranges=result.training_ranges if record_ranges else None,
        )
    version = ModelVersion.objects.get(job=job)
    with TestCase.captureOnCommitCallbacks(execute=True):
        version.approve(by=lead, note="Evaluation reviewed.")
        if activate:
            version.activate(by=lead, reason="Serving test.")
    version.refresh_from_db()
    return version


def activate(version: ModelVersion, *, by: Any) -> None:
    """Activate with the generation bump on commit, as in production."""
    with TestCase.captureOnCommitCallbacks(execute=True):
        version.activate(by=by, reason="Switch.")


def reset_serving_state() -> None:
    """Forget this process's routing table, loaded models and monitoring's bins per version (a cold
    process): a rolled-back test's version ids come back in the next test, cached as another version."""
    from learning_engine.stateless_auth import VERIFIED_TOKENS
    from monitoring.recording import FEATURES

    ROUTER.reset()
    MODEL_CACHE.clear()
    FEATURES.clear()
    VERIFIED_TOKENS.clear()


@contextmanager
def max_data_queries(limit: int) -> Iterator[CaptureQueriesContext]:
    """At most ``limit`` reads and writes inside the block. The savepoints are not counted: serving
    writes the log and monitoring's tallies in one transaction with a savepoint around the tallies
    (``models_registry.serving.serve``), and a test's own transaction turns that into savepoints."""
    from django.db import connection

    with CaptureQueriesContext(connection) as queries:
        yield queries
    data = [query["sql"] for query in queries.captured_queries if "SAVEPOINT" not in query["sql"]]
    assert len(data) <= limit, f"{len(data)} queries, at most {limit} expected:\n" + "\n".join(data)
