"""Serving overhead: the predict endpoints versus a bare ``predict_proba`` of the same pipeline.

A logistic regression is trained on synthetic respiratory encounters (the demo generator), saved,
registered, approved and activated as on a real site. Then, in the same run and process:

- single: the predict endpoint in-process (DRF test client, a real JWT, the prediction log
  written) against the bare model on the same record: its feature dict (``training.features``,
  from the de-identified row) and ``pipeline.predict_proba``. Median latency ratio; issue goal at
  most 8x.
- batch: ``predict/batch/`` with 1,000 records against the bare model on the same 1,000 rows
  (feature dicts and one ``predict_proba``). The issue's goal is a throughput ratio (bare time /
  endpoint time) of at least 0.25; the harness passes a row when measured / baseline <= max_ratio,
  so the row shows endpoint time / bare time with max_ratio 4: the same goal.

The version serves as on a site: its cohort's shipped dictionary is loaded first, so the version
records it and its train split's ranges, and every record is checked against it (records say
``"allow_missing": true``: the demo's labs are not always measured). ``bench_dictionary`` measures
what that check costs.

"Bare" includes making the feature dicts, as the evaluation's latency does: the pipeline's input
is a feature dict, and there is no applying it to a record without one. Informational rows give
the ratios against ``predict_proba`` alone (feature dicts ready-made), the strictest reading.

The endpoint does everything a request does: JWT authentication, routing, validation and
de-identification of each record, featurisation, the prediction, the input hash, the subject
pseudonym, the INSERT of the log and the JSON in and out. Records are the compact form (findings,
symptoms, age, sex); an informational row shows the batch with full interchange records (patient
block and note), which adds ``cases.deid.records.deidentify`` per record.
"""

from __future__ import annotations

import contextlib
import json
import statistics
from collections.abc import Iterator
from typing import Any

from benchmarks import casegen
from benchmarks.harness import Result, scaled, timer, workdir

TRAINING_ROWS = 4000
SINGLE_CALLS = 400
BATCH_SIZE = 1000
BATCH_RUNS = 15
SINGLE_GOAL = 8.0
BATCH_GOAL = 4.0  # endpoint time / bare time, i.e. a throughput ratio of at least 0.25
SLUG = "bench-predict"


def _rows_and_records(count: int, *, seed: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Dataset-shaped rows (for training) and the interchange records they came from: ``count`` of
    the demo's records that the cohort's dictionary takes, as only those reach a dataset (the demo
    writes a temperature in Fahrenheit now and then, outside the dictionary's hard limits)."""

    from django.conf import settings

    from cases.deid.records import deidentify
    from cases.demo import respiratory_records
    from cases.dictionary.checking import DictionaryCache, RecordRefused, check_record
    from cases.interchange import parse_record
    from cases.rows import row_from_record

    casegen.cohort_dictionary()
    dictionaries = DictionaryCache()
    rows, records = [], []
    # A tenth more than needed covers the refused ones (about one in a hundred).
    for record in respiratory_records(count + count // 10 + 10, seed=seed):
        parsed = parse_record(record)
        try:
            check_record(parsed, cache=dictionaries)
        except RecordRefused:
            continue
        row = row_from_record(deidentify(parsed, key=settings.PSEUDONYM_KEY))
        row["label"] = record["diagnosis"]["code"]
        rows.append(row)
        records.append(record)
        if len(records) == count:
            return rows, records
    raise RuntimeError(f"Fewer than {count} of the demo's records fit the {casegen.COHORT} dictionary.")


def _active_version() -> Any:
    """Train, register, approve and activate a version; returns a prediction client."""
    client_user, _version = active_version(
        "bench-predict", slug=SLUG, name="Predict benchmark", rows=scaled(TRAINING_ROWS), seed=11
    )
    return client_user


def active_version(
    prefix: str, *, slug: str, name: str, rows: int, seed: int, client_password: str | None = None
) -> tuple[Any, Any]:
    """Train a logistic regression on ``rows`` respiratory rows through the worker's trainer, then
    register, approve and activate it as model type ``slug``: (prediction client user, version).
    The version records the cohort's dictionary and its train split's ranges, as the worker's do.
    Shared by the in-process (this module), the HTTP (``bench_http``) and the dictionary
    (``bench_dictionary``) predict benchmarks."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    from learning_engine import roles
    from models_registry.models import ModelVersion
    from training.models import ModelType, TrainingJob
    from training.trainer import train

    users = get_user_model().objects
    engineer = users.create_user(f"{prefix}-engineer")
    lead = users.create_user(f"{prefix}-lead")
    lead.groups.add(Group.objects.get(name=roles.CLINICAL_LEAD))
    client_user = users.create_user(f"{prefix}-client", password=client_password)
    client_user.groups.add(Group.objects.get(name=roles.PREDICTION_CLIENT))

    training_rows, _ = _rows_and_records(rows, seed=seed)
    cut = len(training_rows) * 4 // 5
    result = train(
        {"train": training_rows[:cut], "validation": [], "test": training_rows[cut:]},
        algorithm="logistic_regression",
        hyperparameters={},
        report=lambda progress: None,
        artifact_name=prefix,
    )
    assert result.artifact_path is not None
    assert result.artifact_sha256 is not None
    model_type = ModelType.objects.create(slug=slug, name=name, cohort=casegen.COHORT)
    job = TrainingJob.submit(model_type=model_type, by=engineer, algorithm="logistic_regression")
    lease = job.start(worker_id="bench")
    job.complete(
        lease=lease,
        evaluation=result.evaluation,
        artifact=result.artifact_path,
        artifact_sha256=result.artifact_sha256,
        training_ranges=result.training_ranges,
    )  # autocommit: the registry registers the version on commit, right here
    version = ModelVersion.objects.get(job=job)
    version.approve(by=lead, note="Benchmark.")
    version.activate(by=lead, reason="Benchmark.")
    return client_user, version


def _compact(record: dict[str, Any]) -> dict[str, Any]:
    from cases.interchange import parse_date
    from cases.quality import age_at
    from models_registry.serving.inputs import ALLOW_MISSING

    born = parse_date(record["patient"]["birth_date"], "birth_date")
    encounter = parse_date(record["encounter_date"], "encounter_date")
    assert born is not None
    assert encounter is not None
    return {
        "findings": record["findings"],
        "symptoms": record["symptoms"],
        "age": age_at(born, encounter),
        "sex": record["patient"]["sex"],
        # Every demo record has at least five of the eight model inputs: imputed, never refused.
        ALLOW_MISSING: True,
    }


def _median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def _measure(client: Any) -> list[Result]:
    from models_registry.serving.inputs import ALLOW_MISSING, prediction_input
    from models_registry.serving.model_cache import MODEL_CACHE
    from models_registry.serving.router import ROUTER
    from training.features import features

    # secure=True on every request: DEBUG is off here, so plain http would be redirected.
    url = f"/api/v1/model-types/{SLUG}/predict/"
    batch_url = f"/api/v1/model-types/{SLUG}/predict/batch/"
    _, records = _rows_and_records(max(BATCH_SIZE, 50), seed=12)
    compact = [_compact(record) for record in records]
    model = MODEL_CACHE.get(ROUTER.route(SLUG).choose())
    pipeline, numeric = model.pipeline, model.numeric_features
    # The bare model's input: each record's de-identified row, made outside every timer.
    rows = [prediction_input(record).row for record in compact]
    ready = [features(row, numeric) for row in rows]
    single_bodies = [json.dumps(record).encode() for record in compact[:50]]
    size = min(BATCH_SIZE, len(compact))
    batch_bodies = {
        "compact": json.dumps({"records": compact[:size]}).encode(),
        "full": json.dumps({"records": records[:size], ALLOW_MISSING: True}).encode(),
    }

    def bare(batch: list[dict[str, Any]]) -> None:
        pipeline.predict_proba([features(row, numeric) for row in batch])

    def post(target: str, body: bytes) -> None:
        # The body is encoded beforehand: what a request costs the server, not the test client.
        response = client.post(target, body, content_type="application/json", secure=True)
        if response.status_code != 200:
            raise RuntimeError(f"{target} answered {response.status_code}: {response.content[:200]!r}")

    for i in range(20):  # warm-up: routing table, model, code paths
        post(url, single_bodies[i])
        bare(rows[:1])

    calls = scaled(SINGLE_CALLS)
    single: dict[str, list[float]] = {"endpoint": [], "bare": [], "proba": []}
    for i in range(calls):  # interleaved, so all three see the same machine
        with timer() as elapsed:
            post(url, single_bodies[i % 50])
        single["endpoint"].append(elapsed.wall)
        with timer() as elapsed:
            bare(rows[i % 50 : i % 50 + 1])
        single["bare"].append(elapsed.wall)
        with timer() as elapsed:
            pipeline.predict_proba(ready[i % 50 : i % 50 + 1])
        single["proba"].append(elapsed.wall)

    batch: dict[str, list[float]] = {"compact": [], "full": [], "bare": [], "proba": []}
    cpu: dict[str, list[float]] = {"compact": [], "bare": []}
    for _ in range(BATCH_RUNS):
        for kind, body in batch_bodies.items():
            with timer() as elapsed:
                post(batch_url, body)
            batch[kind].append(elapsed.wall)
            cpu.setdefault(kind, []).append(elapsed.cpu)
        with timer() as elapsed:
            bare(rows[:size])
        batch["bare"].append(elapsed.wall)
        cpu["bare"].append(elapsed.cpu)
        with timer() as elapsed:
            pipeline.predict_proba(ready[:size])
        batch["proba"].append(elapsed.wall)

    one = {key: _median_ms(values) for key, values in single.items()}
    many = {key: _median_ms(values) for key, values in batch.items()}
    return [
        Result(
            "predict endpoint vs bare model, one record (median)",
            one["endpoint"],
            "ms",
            baseline=one["bare"],
            max_ratio=SINGLE_GOAL,
            note=f"{calls} calls each, interleaved. Endpoint: JWT, routing, validation, de-identification, "
            "features, predict_proba, hash, log INSERT, JSON. Bare: features + predict_proba",
        ),
        Result(
            "predict endpoint vs predict_proba alone, one record (median)",
            one["endpoint"],
            "ms",
            baseline=one["proba"],
            note="the feature dict ready-made: the strictest baseline",
        ),
        Result(
            f"batch predict vs bare model, {size:,} records (median)",
            many["compact"],
            "ms",
            baseline=many["bare"],
            max_ratio=BATCH_GOAL,
            note=f"throughput ratio (bare / endpoint) {many['bare'] / many['compact']:.2f}, goal >= 0.25 "
            f"(in CPU time {statistics.median(cpu['bare']) / statistics.median(cpu['compact']):.2f}); "
            f"{BATCH_RUNS} interleaved runs of compact records (findings, symptoms, age, sex)",
        ),
        Result(
            f"batch predict vs predict_proba alone, {size:,} records (median)",
            many["compact"],
            "ms",
            baseline=many["proba"],
            note=f"throughput ratio {many['proba'] / many['compact']:.2f}; feature dicts ready-made",
        ),
        Result(
            f"batch predict of full interchange records vs bare model, {size:,} (median)",
            many["full"],
            "ms",
            baseline=many["bare"],
            note=f"throughput ratio {many['bare'] / many['full']:.2f}; adds cases.deid.records.deidentify per record",
        ),
    ]


@contextlib.contextmanager
def serving_settings() -> Iterator[None]:
    """The settings in-process predict benchmarks serve under, with empty routing and model caches."""
    from django.test.utils import override_settings

    from models_registry.serving.model_cache import MODEL_CACHE
    from models_registry.serving.router import ROUTER

    # The serving generation lives in this run's own file cache, never the developer's.
    caches = {
        alias: {"BACKEND": backend, "LOCATION": str(workdir() / alias)}
        for alias, backend in (
            ("default", "learning_engine.file_cache.FileCache"),
            ("throttle", "django.core.cache.backends.filebased.FileBasedCache"),
        )
    }
    # The predict and feedback counters, as production keeps them without Redis (settings.py).
    caches["throttle_local"] = {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "bench"}
    with override_settings(CACHES=caches, MEDIA_ROOT=str(workdir() / "media")):
        ROUTER.reset()
        MODEL_CACHE.clear()
        yield


def prediction_client(user: Any) -> Any:
    """A DRF test client that authenticates as ``user`` with a real JWT."""
    from rest_framework.test import APIClient

    from learning_engine.tokens import RefreshToken

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {RefreshToken.for_user(user).access_token}")
    return client


def run() -> list[Result]:
    with serving_settings():
        return _measure(prediction_client(_active_version()))
