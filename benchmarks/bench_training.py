"""Training overhead: a job on a ready snapshot, from queued to completed, versus a bare
scikit-learn fit and predict on the same arrays in the same process.

The job path includes everything a worker does: claiming the job, reading and checking the
Parquet file, featurising, fitting, the test-split evaluation (bootstrap intervals, subgroups,
latency), saving the skops artifact and every progress write. The bare path gets the feature
arrays ready-made and only fits and predicts. Issue goal: at most 1.5x for 50,000 cases.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from benchmarks.harness import Result, scaled, timer

CASES = 50_000
GOAL = 1.5
COHORT = "bench-training"
BATCH = 5000


def create_cases(total: int) -> None:
    """Approved cases whose de-identified findings depend on the diagnosis (the demo profiles)."""
    from django.contrib.auth import get_user_model

    from cases import deid
    from cases.demo import PROFILES_BY_CODE, sample_findings, sample_symptoms
    from cases.models import Case

    users = get_user_model().objects
    submitter = users.create_user("bench-training-submitter")
    reviewer = users.create_user("bench-training-reviewer")
    rng = np.random.default_rng(7)
    profiles = list(PROFILES_BY_CODE.values())
    weights = np.array([p.prevalence for p in profiles], dtype=float)
    weights /= weights.sum()
    batch: list[Case] = []
    for index in range(total):
        profile = profiles[rng.choice(len(profiles), p=weights)]
        age = int(rng.integers(18, 95))
        pseudonym = hashlib.sha256(str(index // 2).encode()).hexdigest()  # two encounters per patient
        record = {
            "policy_version": deid.POLICY_VERSION,
            "patient_pseudonym": pseudonym,
            "source": COHORT,
            "cohort": COHORT,
            "encounter_year": 2025,
            "age": "90+" if age > 89 else age,
            "age_band": deid.age_band(age),
            "sex": "female" if index % 2 else "male",
            "zip3": "021",
            "findings": sample_findings(profile, rng, age=age),
            "symptoms": sample_symptoms(profile, rng),
            "note": "",
            "diagnosis": {"code": profile.code, "label": profile.label},
        }
        batch.append(
            Case(
                source=COHORT,
                external_id=f"bench-training-{index}",
                cohort=COHORT,
                status=Case.Status.APPROVED,
                patient={"mrn": f"BT-{index}"},
                encounter_date="2025-06-01",
                diagnosis_code=profile.code,
                record_hash=f"{index:064x}",
                quality_score=1.0,
                submitted_by=submitter,
                reviewed_by=reviewer,
                deidentified=record,
                deid_policy_version=deid.POLICY_VERSION,
                patient_pseudonym=pseudonym,
            )
        )
        if len(batch) == BATCH:
            Case.objects.bulk_create(batch)
            batch = []
    if batch:
        Case.objects.bulk_create(batch)


def ready_snapshot(total: int) -> tuple[Any, Any, Any]:
    from django.contrib.auth import get_user_model

    from training.datasets import build_snapshot, create_snapshot
    from training.models import ModelType

    create_cases(total)
    model_type = ModelType.objects.create(
        slug=COHORT, name="Training benchmark", cohort=COHORT, min_cases_to_train=10, min_quality=0.0
    )
    engineer = get_user_model().objects.create_user("bench-training-engineer")
    snapshot = build_snapshot(create_snapshot(model_type, by=engineer, seed=1).pk)
    return model_type, engineer, snapshot


def job_run(model_type: Any, engineer: Any, snapshot: Any, algorithm: str, params: dict[str, Any]) -> float:
    from training.models import TrainingJob
    from training.tasks import run_training_job

    with timer() as elapsed:
        job = TrainingJob.submit(
            model_type=model_type, by=engineer, dataset=snapshot, algorithm=algorithm, hyperparameters=params
        )
        outcome = run_training_job.call(job.pk)
    if outcome["outcome"] != "completed":
        job.refresh_from_db()
        raise RuntimeError(f"benchmark job failed: {job.error_log}")
    return elapsed.wall


def bare_run(snapshot: Any, algorithm: str, params: dict[str, Any]) -> float:
    """Fit and predict the same pipeline on ready-made arrays: no database, no evaluation."""
    from django.conf import settings
    from threadpoolctl import threadpool_limits

    from training import features
    from training.algorithms import validate_hyperparameters
    from training.dataset_format import read_rows_by_split
    from training.trainer import build_classifier, build_preprocessing

    rows = read_rows_by_split(snapshot)
    numeric = features.numeric_feature_names(rows["train"])
    preprocessing = build_preprocessing()
    x_train = preprocessing.fit_transform(features.feature_dicts(rows["train"], numeric))
    x_test = preprocessing.transform(features.feature_dicts(rows["test"], numeric))
    y_train = np.array(features.labels(rows["train"]), dtype=object)
    classifier = build_classifier(algorithm, validate_hyperparameters(algorithm, params))
    if algorithm == "sgd":
        # The bare equivalent of n epochs: plain fit over n passes (per-sample, not mini-batch).
        classifier.set_params(max_iter=params["epochs"], tol=None)
    # The same native thread budget as the job (settings.TRAINING_THREADS).
    with threadpool_limits(limits=settings.TRAINING_THREADS), timer() as elapsed:
        classifier.fit(x_train, y_train)
        classifier.predict_proba(x_test)
    return elapsed.wall


def run() -> list[Result]:
    total = scaled(CASES)
    model_type, engineer, snapshot = ready_snapshot(total)
    results = []
    for algorithm, params in (("logistic_regression", {}), ("sgd", {"epochs": 10, "batch_size": 256})):
        job_seconds = job_run(model_type, engineer, snapshot, algorithm, params)
        bare_seconds = bare_run(snapshot, algorithm, params)
        results.append(
            Result(
                f"training job vs bare fit+predict, {algorithm}, {total:,} cases",
                job_seconds,
                "s",
                baseline=bare_seconds,
                max_ratio=GOAL if algorithm == "logistic_regression" else None,
                note="job: queued -> completed in-process (claim, read, featurise, fit, evaluate, save, progress writes)"
                if algorithm == "logistic_regression"
                else "",
            )
        )
    return results
