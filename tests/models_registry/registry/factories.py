"""Registry factories: model versions in every state, synthetic snapshots with their rows, skops bytes.

    ModelVersionFactory(created_by=engineer)               registered: pending, inactive (no artifact file)
    ModelVersionFactory(approved=True, approved_by=lead)   ... approved through ``approve``
    ModelVersionFactory(active=True, approved_by=lead)     ... approved and activated
    ModelVersionFactory(rejected=True) / (archived=True)   ... rejected / approved, active, then archived
    ModelVersionFactory(job__accuracy=0.92)                the completed job's offline accuracy
    ModelVersionFactory(trained=True, dataset=snapshot)    a real skops artifact trained on the snapshot's rows
        ... shuffle_labels=True                            ... no better than chance
        ... hyperparameters={"C": 0.5}                     ... with these hyperparameters
    snapshot = ready_snapshot(model_type, by=user, seed=1) a ready snapshot with a real file and its rows

Everything goes through the application's own code: the trainer (``training.trainer.train`` with an
artifact name, so the skops file lands in the test's media folder), the job's transitions and the
registry's ``job_completed`` receiver. The rows are synthetic and de-identified by construction:
two diagnoses that temperature and SpO2 separate well.
"""

from __future__ import annotations

import hashlib
import io
import random
import uuid
from typing import Any

import factory
import pyarrow as pa
import pyarrow.parquet as pq
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.test import TestCase

from learning_engine import roles
from models_registry.models import ModelVersion
from models_registry.registry.registration import register_completed_job
from tests.factories import user_with_role
from tests.training.factories import ModelTypeFactory, TrainingJobFactory
from training.dataset_format import SCHEMA
from training.models import DatasetSnapshot, ModelType, TrainingJob
from training.trainer import train

LABELS = ("J18.9", "J06.9")
SPLIT_SIZES = {"train": 80, "validation": 10, "test": 60}


def synthetic_rows(split: str, count: int, *, seed: int, first_id: int) -> list[dict[str, Any]]:
    """Dataset rows (``training.dataset_format``) of two well separated diagnoses."""
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        label = LABELS[i % 2]
        sick = label == LABELS[0]
        case_id = first_id + i
        rows.append(
            {
                "case_id": case_id,
                "split": split,
                "patient_pseudonym": hashlib.sha256(f"patient-{case_id}".encode()).hexdigest(),
                "label": label,
                "label_text": "",
                "age": rng.randint(20, 85),
                "age_band": rng.choice(["20-29", "40-49", "60-69"]),
                "sex": rng.choice(["female", "male"]),
                "encounter_year": 2026,
                "findings": {
                    "temperature_c": round(rng.gauss(38.7 if sick else 37.0, 0.6), 2),
                    "spo2": round(rng.gauss(92.0 if sick else 97.0, 2.0), 1),
                },
                "symptoms": ["cough", "fever"] if sick else ["cough"],
            }
        )
    return rows


def rows_by_split(*, seed: int, first_id: int = 1) -> dict[str, list[dict[str, Any]]]:
    result: dict[str, list[dict[str, Any]]] = {}
    next_id = first_id
    for offset, (split, count) in enumerate(SPLIT_SIZES.items()):
        result[split] = synthetic_rows(split, count, seed=seed * 10 + offset, first_id=next_id)
        next_id += count
    return result


def parquet_bytes(rows: list[dict[str, Any]]) -> bytes:
    columns = {field.name: [row[field.name] for row in rows] for field in SCHEMA}
    columns["findings"] = [list(row["findings"].items()) for row in rows]
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pydict(columns, schema=SCHEMA), sink)
    return sink.getvalue()


def ready_snapshot(model_type: ModelType, *, by: Any, seed: int = 1, first_id: int = 1) -> DatasetSnapshot:
    """A ready snapshot whose file holds ``rows_by_split(seed=...)`` (marked ready through ``complete``)."""
    splits = rows_by_split(seed=seed, first_id=first_id)
    rows = [row for split in splits.values() for row in split]
    snapshot = DatasetSnapshot.objects.create(
        model_type=model_type,
        created_by=by,
        filters={"cohort": model_type.cohort, "label_field": "diagnosis.code", "min_quality": 0.0},
    )
    data = parquet_bytes(rows)
    label_counts: dict[str, dict[str, int]] = {}
    for row in rows:
        counts = label_counts.setdefault(row["split"], {})
        counts[row["label"]] = counts.get(row["label"], 0) + 1
    snapshot.complete(
        manifest={split: [row["case_id"] for row in split_rows] for split, split_rows in splits.items()},
        label_counts=label_counts,
        case_count=len(rows),
        patient_count=len(rows),
        policy_version="deid-test",
        content_hash=hashlib.sha256(data).hexdigest(),
        scan_report={"clean": True, "cases_scanned": len(rows), "findings": [], "findings_total": 0},
        file=default_storage.save(f"datasets/{snapshot.pk}-synthetic.parquet", ContentFile(data)),
        file_sha256=hashlib.sha256(data).hexdigest(),
        file_size=len(data),
    )
    snapshot._splits = splits  # type: ignore[attr-defined]  # the rows, for ModelVersionFactory(trained=True)
    return snapshot


def snapshot_rows(snapshot: DatasetSnapshot) -> dict[str, list[dict[str, Any]]]:
    splits = getattr(snapshot, "_splits", None)
    if splits is None:
        raise ValueError("Use a snapshot made by ready_snapshot (it carries its rows).")
    return splits


def train_artifact(
    snapshot: DatasetSnapshot, *, shuffle_labels: bool = False, algorithm: str = "logistic_regression", **params: Any
) -> Any:
    """``training.trainer.train`` on the snapshot's rows, saving a skops artifact; the TrainingResult."""
    splits = snapshot_rows(snapshot)
    if shuffle_labels:
        rng = random.Random(7)
        labels = [row["label"] for row in splits["train"]]
        rng.shuffle(labels)
        splits = {
            **splits,
            "train": [{**row, "label": label} for row, label in zip(splits["train"], labels, strict=True)],
        }
    return train(
        splits,
        algorithm=algorithm,
        hyperparameters=params,
        report=lambda progress: None,
        artifact_name=f"test-{uuid.uuid4().hex[:12]}",
    )


def external_completed_job(
    snapshot: DatasetSnapshot, *, by: Any, reported: dict[str, Any] | None = None
) -> TrainingJob:
    """An external trainer's job, started and completed through the model like the API does (no artifact)."""
    job = TrainingJob.submit(model_type=snapshot.model_type, by=by, dataset=snapshot, executor="external")
    lease = job.start(worker_id=f"api:{by.username}", by=by)
    evaluation = {"reported_by_client": reported} if reported is not None else {}
    job.complete(lease=lease, evaluation=evaluation, artifact="", artifact_sha256="", metrics=reported, by=by)
    return job


def artifact_bytes(version_or_result: Any) -> bytes:
    """The stored bytes of a version's (or a TrainingResult's) artifact."""
    path = getattr(version_or_result, "artifact_path", None) or version_or_result.artifact
    with default_storage.open(path, "rb") as handle:
        return handle.read()


class ModelVersionFactory(factory.django.DjangoModelFactory[ModelVersion]):
    """A version registered as the registry does it: a completed job (``TrainingJobFactory``) handed to
    the registry's ``job_completed`` receiver (called directly: tests never commit). Traits move it on
    through the version's own transitions.

    By default the job carries an artifact record whose file does not exist (enough for every
    transition, not for loading); ``trained=True`` trains a real skops artifact on ``dataset`` (a
    ``ready_snapshot``; ``shuffle_labels=True``: no better than chance). The model type is the
    dataset's, else the demo's "diagnosis" type. ``approved_by`` (default a fresh clinical lead)
    approves with ``approval_note``, activates with ``activation_reason`` and archives.
    """

    class Meta:
        model = ModelVersion

    class Params:
        approved = factory.Trait(approval_status="approved")
        rejected = factory.Trait(approval_status="rejected")
        active = factory.Trait(approved=True, deployment_status="active")
        archived = factory.Trait(approved=True, deployment_status="archived")
        trained = False  # True: a real artifact trained on ``dataset``
        shuffle_labels = False
        hyperparameters: dict[str, Any] = {}  # of the trained model, e.g. {"C": 0.5}

    dataset = None
    model_type = factory.Maybe(
        "dataset",
        yes_declaration=factory.SelfAttribute("dataset.model_type"),
        no_declaration=factory.SubFactory(ModelTypeFactory, diagnosis=True),
    )
    created_by = factory.LazyFunction(lambda: user_with_role(roles.ML_ENGINEER))
    job = factory.SubFactory(
        TrainingJobFactory,
        with_artifact=True,
        model_type=factory.SelfAttribute("..model_type"),
        created_by=factory.SelfAttribute("..created_by"),
        dataset=factory.SelfAttribute("..dataset"),
        result=factory.Maybe(
            factory.SelfAttribute("..trained"),
            yes_declaration=factory.LazyAttribute(
                lambda job: train_artifact(
                    job.dataset,
                    shuffle_labels=job.factory_parent.shuffle_labels,
                    **job.factory_parent.hyperparameters,
                )
            ),
            no_declaration=None,
        ),
    )
    approval_status = "pending"
    deployment_status = "inactive"
    approved_by = None
    approval_note = "Reviewed."
    activation_reason = "Production."

    @classmethod
    def _create(cls, model_class: type[ModelVersion], *args: Any, **kwargs: Any) -> ModelVersion:
        job = kwargs["job"]
        register_completed_job(sender=TrainingJob, job_id=job.pk)
        version = model_class.objects.get(job=job)
        approval, deployment = kwargs["approval_status"], kwargs["deployment_status"]
        if approval == "pending":
            return version
        lead = kwargs["approved_by"] or user_with_role(roles.CLINICAL_LEAD)
        if approval == "rejected":
            version.reject(by=lead, note=kwargs["approval_note"])
            return version
        version.approve(by=lead, note=kwargs["approval_note"])
        if deployment in ("active", "archived"):
            # As after a real commit: the serving generation moves on.
            with TestCase.captureOnCommitCallbacks(execute=True):
                version.activate(by=lead, reason=kwargs["activation_reason"])
            version.refresh_from_db()
        if deployment == "archived":
            version.deactivate(by=lead, reason="Replaced.")
            version.archive(by=lead, reason="Retired.")
            version.refresh_from_db()
        return version
