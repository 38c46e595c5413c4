"""Factories for the training API tests, with a trait per state (on top of ``tests.training.factories``).

    SnapshotFactory(ready=True)                    marked ready through DatasetSnapshot.complete
    SnapshotFactory(ready=True, with_file=True)    ... with a small real Parquet file
    TrainingJobFactory(running=True)               submitted and started through the model's methods
    TrainingJobFactory(executor="external", running=True).lease   the lease start returned

Every state is reached through the models' own transitions, so a factory object is a row the
application could have made. Nothing is enqueued: the tests run inside a transaction that never
commits, and ``TrainingJob.submit`` enqueues on commit.
"""

from __future__ import annotations

import hashlib
import io
from typing import Any

import factory
import pyarrow as pa
import pyarrow.parquet as pq
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.tasks import task_backends
from django.tasks.backends.dummy import DummyBackend

from tests.factories import UserFactory
from tests.training.factories import ModelTypeFactory
from training.dataset_format import SCHEMA
from training.models import DatasetSnapshot, TrainingJob

LABELS = ("J18.9", "J45.909")


def task_queue() -> DummyBackend:
    """The test settings' task backend, which keeps what is enqueued in ``results``."""
    backend = task_backends["default"]
    assert isinstance(backend, DummyBackend), "the tests expect TASKS_BACKEND=...DummyBackend"
    return backend


def parquet_bytes(case_ids: list[int], splits: list[str]) -> bytes:
    """A tiny dataset file in the real schema (no case behind it: only for download tests)."""
    rows = {
        "case_id": case_ids,
        "split": splits,
        "patient_pseudonym": [hashlib.sha256(str(i).encode()).hexdigest() for i in case_ids],
        "label": [LABELS[i % 2] for i in case_ids],
        "label_text": ["" for _ in case_ids],
        "age": [40 for _ in case_ids],
        "age_band": ["40-49" for _ in case_ids],
        "sex": ["female" for _ in case_ids],
        "encounter_year": [2026 for _ in case_ids],
        "findings": [[("spo2", 95.0)] for _ in case_ids],
        "symptoms": [["cough"] for _ in case_ids],
    }
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pydict(rows, schema=SCHEMA), sink)
    return sink.getvalue()


class SnapshotFactory(factory.django.DjangoModelFactory[DatasetSnapshot]):
    """A snapshot moved to a state cheaply: ``complete`` with fixed results (a small real file
    with ``with_file=True``), or ``fail``. For a really built one, use
    ``tests.training.factories.DatasetSnapshotFactory(ready=True)``."""

    class Meta:
        model = DatasetSnapshot

    class Params:
        ready = factory.Trait(state="ready")
        failed = factory.Trait(state="failed")

    model_type = factory.SubFactory(ModelTypeFactory)
    created_by = factory.SubFactory(UserFactory)
    filters = factory.LazyAttribute(
        lambda o: {"cohort": o.model_type.cohort, "label_field": "diagnosis.code", "min_quality": 0.0}
    )
    state = "building"
    with_file = False
    scan_report = None

    @classmethod
    def _create(cls, model_class: type[DatasetSnapshot], *args: Any, **kwargs: Any) -> DatasetSnapshot:
        state, with_file, scan_report = kwargs.pop("state"), kwargs.pop("with_file"), kwargs.pop("scan_report")
        snapshot = super()._create(model_class, *args, **kwargs)
        if state == "failed":
            snapshot.fail(reason="Too few cases.", scan_report=scan_report)
        elif state == "ready":
            manifest = {"train": [1, 2, 3, 4], "validation": [5], "test": [6, 7]}
            results: dict[str, Any] = {}
            if with_file:
                ids = [i for split in manifest.values() for i in split]
                splits = [name for name, split in manifest.items() for _ in split]
                data = parquet_bytes(ids, splits)
                results = {
                    "file": default_storage.save(f"datasets/{snapshot.pk}-test.parquet", ContentFile(data)),
                    "file_sha256": hashlib.sha256(data).hexdigest(),
                    "file_size": len(data),
                }
            snapshot.complete(
                manifest=manifest,
                label_counts={"train": {"J18.9": 2, "J45.909": 2}, "validation": {"J18.9": 1}, "test": {"J45.909": 2}},
                case_count=7,
                patient_count=7,
                policy_version="deid-test",
                content_hash=hashlib.sha256(f"snapshot-{snapshot.pk}".encode()).hexdigest(),
                scan_report=scan_report or {"clean": True, "cases_scanned": 7, "findings": [], "findings_total": 0},
                **results,
            )
        return snapshot


class TrainingJobFactory(factory.django.DjangoModelFactory[TrainingJob]):
    """A job made by ``TrainingJob.submit``; traits move it on. ``job.lease`` is the running lease."""

    class Meta:
        model = TrainingJob

    class Params:
        running = factory.Trait(state="running")
        failed = factory.Trait(state="failed")
        completed = factory.Trait(state="completed")
        cancelled = factory.Trait(state="cancelled")

    # The dataset's model type when a dataset is given (a job must train on its own type's data).
    model_type = factory.Maybe(
        "dataset",
        yes_declaration=factory.SelfAttribute("dataset.model_type"),
        no_declaration=factory.SubFactory(ModelTypeFactory),
    )
    created_by = factory.SubFactory(UserFactory)
    dataset = None
    algorithm = None
    hyperparameters = factory.LazyFunction(dict)
    priority = 0
    max_attempts = 3
    executor = TrainingJob.Executor.WORKER
    state = "queued"

    @classmethod
    def _create(cls, model_class: type[TrainingJob], *args: Any, **kwargs: Any) -> TrainingJob:
        state = kwargs.pop("state")
        job = model_class.submit(
            model_type=kwargs.pop("model_type"),
            by=kwargs.pop("created_by"),
            dataset=kwargs.pop("dataset"),
            algorithm=kwargs.pop("algorithm"),
            hyperparameters=kwargs.pop("hyperparameters"),
            priority=kwargs.pop("priority"),
            max_attempts=kwargs.pop("max_attempts"),
            executor=kwargs.pop("executor"),
        )
        if state == "queued":
            return job
        if state == "cancelled":
            job.cancel(by=job.created_by, reason="Not needed.")
            return job
        lease = job.start(worker_id="test-worker:1")
        if state == "failed":
            job.fail(lease=lease, reason="RuntimeError: out of memory")
        elif state == "completed":
            job.complete(lease=lease, evaluation={"accuracy": 0.9}, artifact="", artifact_sha256="")
        return job
