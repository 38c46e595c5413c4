"""Training factories, a trait per state, every state reached through the models' own transitions.

    ModelTypeFactory(diagnosis=True)               the demo's "diagnosis" type (respiratory cohort)
    DatasetSnapshotFactory()                       building
    DatasetSnapshotFactory(ready=True)             marked ready through ``complete`` with fixed results
    DatasetSnapshotFactory(ready=True, with_file=True)   ... with a small real Parquet file
    DatasetSnapshotFactory(failed=True)            failed through ``fail``
    DatasetSnapshotFactory(built=True)             really built by ``training.datasets`` from approved cases
    TrainingJobFactory(running=True)               submitted and started; ``job.lease`` is the lease
    TrainingJobFactory(completed=True)             completed without an artifact
    TrainingJobFactory(with_artifact=True)         completed with an artifact record (no file behind it):
                                                   the registry registers it (on commit)
    TrainingJobFactory(completed=True, result=r)   completed with a real ``TrainingResult``
    approved_cohort("respiratory", patients=12)    approved cases for a cohort

``built=True`` creates approved cases for the model type's cohort first when the cohort has too few,
so the file, manifest and hashes are the real thing. Tests that build should point ``MEDIA_ROOT``
at a temporary folder (tests/conftest.py does). Nothing is enqueued: the tests run inside a
transaction that never commits, and ``TrainingJob.submit`` enqueues on commit.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from typing import Any

import factory
import pyarrow as pa
import pyarrow.parquet as pq
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.tasks import task_backends
from django.tasks.backends.dummy import DummyBackend

from cases.interchange import parse_record
from cases.models import Case
from tests.cases.factories import record_dict
from tests.factories import UserFactory
from training.dataset_format import SCHEMA
from training.datasets import build_snapshot, create_snapshot, selected_cases
from training.models import DatasetSnapshot, ModelType, TrainingJob

# (code, label) pairs for generated cohorts.
DIAGNOSES: tuple[tuple[str, str], ...] = (
    ("J18.9", "Pneumonia, unspecified organism"),
    ("J06.9", "Acute upper respiratory infection, unspecified"),
    ("J45.909", "Unspecified asthma, uncomplicated"),
    ("J44.1", "Chronic obstructive pulmonary disease with acute exacerbation"),
)


class ModelTypeFactory(factory.django.DjangoModelFactory[ModelType]):
    """A model type with a cohort of its own, so tests never share cases by accident.

    ``ModelTypeFactory.create(diagnosis=True)`` is the demo's "diagnosis" type of the respiratory cohort
    (whose data dictionary the test database holds), the one most tests predict and train with; the
    ``model_type`` fixture (tests/conftest.py) gives it. Made by slug: a second call returns the first.
    """

    class Meta:
        model = ModelType
        django_get_or_create = ("slug",)

    class Params:
        diagnosis = factory.Trait(slug="diagnosis", name="Respiratory diagnosis", cohort="respiratory")

    slug = factory.Sequence(lambda n: f"model-type-{n}")
    name = factory.LazyAttribute(lambda model_type: model_type.slug.replace("-", " ").capitalize())
    cohort = factory.Sequence(lambda n: f"cohort-{n}")
    label_field = "diagnosis.code"
    min_cases_to_train = 8
    min_quality = 0.5


def approved_cohort(
    cohort: str,
    *,
    patients: int = 12,
    cases_per_patient: int | Sequence[int] = 1,
    diagnoses: Sequence[tuple[str, str]] = DIAGNOSES[:2],
    submitter: Any = None,
    reviewer: Any = None,
    **record_overrides: Any,
) -> list[Case]:
    """Approved cases of ``cohort``: ``patients`` patients with ``cases_per_patient`` cases each.

    Diagnoses go round-robin over the cases, so every diagnosis has cases when there are at least
    as many cases as diagnoses. ``cases_per_patient`` may be a list (one count per patient). Quicker
    than the API path: the submitted cases are bulk-created, then each is approved through
    ``Case.approve`` (the real de-identification, pseudonym and audit row).
    """
    submitter = submitter or UserFactory()
    reviewer = reviewer or UserFactory()
    counts = [cases_per_patient] * patients if isinstance(cases_per_patient, int) else list(cases_per_patient)
    built = []
    index = 0
    for count in counts:
        patient = record_dict()["patient"]
        for _ in range(count):
            code, label = diagnoses[index % len(diagnoses)]
            index += 1
            raw = record_dict(
                cohort=cohort,
                patient=patient,
                diagnosis={"code": code, "label": label},
                note=f"{patient['name']} ({patient['mrn']}) presented with cough and fever.",
            )
            raw.update(record_overrides)
            built.append(Case.build(parse_record(raw), by=submitter))
    cases = Case.objects.bulk_create(built)
    for case in cases:
        case.approve(by=reviewer, note="Approved for a dataset test.")
    return cases


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


class DatasetSnapshotFactory(factory.django.DjangoModelFactory[DatasetSnapshot]):
    """A snapshot of a model type; ``ready`` and ``failed`` move it on cheaply (``complete`` with fixed
    results, a small real file with ``with_file=True``; ``fail``), ``built`` really builds it."""

    class Meta:
        model = DatasetSnapshot

    class Params:
        ready = factory.Trait(state="ready")
        failed = factory.Trait(state="failed")
        built = factory.Trait(state="built")

    model_type = factory.SubFactory(ModelTypeFactory)
    created_by = factory.SubFactory(UserFactory)
    filters = factory.LazyAttribute(
        lambda o: {"cohort": o.model_type.cohort, "label_field": "diagnosis.code", "min_quality": 0.0}
    )
    state = "building"
    with_file = False
    scan_report = None
    # Of a built snapshot only: what ``training.datasets.create_snapshot`` takes, and the cohort's size.
    seed = 0
    validation_fraction = 0.15
    test_fraction = 0.2
    min_quality = None
    patients = 12

    @classmethod
    def _create(cls, model_class: type[DatasetSnapshot], *args: Any, **kwargs: Any) -> DatasetSnapshot:
        state, with_file, scan_report = kwargs.pop("state"), kwargs.pop("with_file"), kwargs.pop("scan_report")
        build = {name: kwargs.pop(name) for name in ("seed", "validation_fraction", "test_fraction", "min_quality")}
        patients = kwargs.pop("patients")
        if state == "built":
            return cls._build_for_real(kwargs["model_type"], by=kwargs["created_by"], patients=patients, **build)
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

    @staticmethod
    def _build_for_real(model_type: ModelType, *, by: Any, patients: int, **build: Any) -> DatasetSnapshot:
        snapshot = create_snapshot(model_type, by=by, **build)
        if selected_cases(snapshot.filters).count() < model_type.min_cases_to_train:
            approved_cohort(model_type.cohort, patients=max(patients, model_type.min_cases_to_train))
        build_snapshot(snapshot.pk)
        snapshot.refresh_from_db()
        return snapshot


class TrainingJobFactory(factory.django.DjangoModelFactory[TrainingJob]):
    """A job made by ``TrainingJob.submit``; traits move it on. ``job.lease`` is the running lease.

    A completed job's results are ``evaluation``, ``artifact``, ``artifact_sha256``, ``metrics`` and
    ``training_ranges``, or all of them (with the algorithm and hyperparameters) from ``result``, a
    ``training.trainer.TrainingResult``.
    """

    class Meta:
        model = TrainingJob

    class Params:
        running = factory.Trait(state="running")
        failed = factory.Trait(state="failed")
        completed = factory.Trait(state="completed")
        cancelled = factory.Trait(state="cancelled")
        # Completed with an artifact record whose file does not exist: enough for the registry to
        # register a version and for its transitions, not to load it.
        with_artifact = factory.Trait(
            completed=True, algorithm="logistic_regression", artifact="models/x.skops", artifact_sha256="a" * 64
        )

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
    worker_id = "test-worker:1"
    accuracy = 0.9
    evaluation = factory.LazyAttribute(
        lambda o: {"accuracy": o.accuracy, "f1_macro": o.accuracy - 0.01, "test_size": 100}
    )
    artifact = ""
    artifact_sha256 = ""
    metrics = None
    training_ranges = None
    result = None

    @classmethod
    def _create(cls, model_class: type[TrainingJob], *args: Any, **kwargs: Any) -> TrainingJob:
        state, result = kwargs.pop("state"), kwargs.pop("result")
        outcome = {name: kwargs.pop(name) for name in ("evaluation", "artifact", "artifact_sha256", "metrics")}
        outcome["training_ranges"] = kwargs.pop("training_ranges")
        kwargs.pop("accuracy")
        if result is not None:
            kwargs.update(algorithm=result.algorithm, hyperparameters=result.hyperparameters)
            outcome = {
                "evaluation": result.evaluation,
                "artifact": result.artifact_path or "",
                "artifact_sha256": result.artifact_sha256 or "",
                "metrics": result.metrics,
                "training_ranges": result.training_ranges,
            }
        worker_id = kwargs.pop("worker_id")
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
        lease = job.start(worker_id=worker_id)
        if state == "failed":
            job.fail(lease=lease, reason="RuntimeError: out of memory")
        elif state == "completed":
            job.complete(lease=lease, **outcome)
        return job
