"""Locking a model type's evaluation set (``training.models.LockedEvaluationSet``), under its policy.

Which patients: approved, labelled cases of the cohort (the dataset builder's own selection,
``training.datasets.selected_cases``) whose patients are in no active locked set and in no ready
snapshot's train or validation split of the cohort, so no model trained so far has seen them. Of
those patients a seeded, reproducible ``policy.locked_fraction`` is taken (by a keyed hash of the
pseudonym, never by position), as many as fit ``policy.locked_max_cases``; their cases are the set.
From then on the dataset builder leaves every case of those patients out of every snapshot.

A set is renewed only under the policy: ``policy.locked_renew_days`` after it was locked, at the
start of the next cycle (``current_locked_set``); the old set is retired first, so its patients may
train again and the new set is chosen among patients no model has seen.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import TYPE_CHECKING

from django.db import IntegrityError, transaction
from django.utils import timezone

from cases.models import Case
from training.datasets import selected_cases
from training.models import DatasetSnapshot, LockedEvaluationSet, LockedPatient, ModelType

if TYPE_CHECKING:
    from learning.models import LearningPolicy
    from learning_engine.actors import SystemActor


def trained_pseudonyms(cohort: str) -> set[str]:
    """Patients in a train or validation split of any ready snapshot of ``cohort``."""
    ids: set[int] = set()
    snapshots = DatasetSnapshot.objects.filter(status=DatasetSnapshot.Status.READY, filters__cohort=cohort)
    for manifest in snapshots.values_list("manifest", flat=True).iterator(chunk_size=50):
        for split in ("train", "validation"):
            ids.update(int(pk) for pk in (manifest or {}).get(split, []))
    pseudonyms: set[str] = set()
    id_list = sorted(ids)
    for start in range(0, len(id_list), 5000):
        chunk = id_list[start : start + 5000]
        pseudonyms.update(Case.objects.filter(pk__in=chunk).values_list("patient_pseudonym", flat=True))
    return pseudonyms


def _order_key(seed: int, pseudonym: str) -> str:
    return hashlib.sha256(f"{seed}:{pseudonym}".encode()).hexdigest()


def choose(model_type: ModelType, policy: LearningPolicy, *, seed: int = 0) -> tuple[list[int], list[str]]:
    """The case ids and patients a new locked set of ``model_type`` would take (nothing written)."""
    filters = {
        "cohort": model_type.cohort,
        "min_quality": model_type.min_quality,
        "label_field": model_type.label_field,
    }
    excluded = trained_pseudonyms(model_type.cohort)
    by_patient: dict[str, list[int]] = {}
    for pk, pseudonym in (
        selected_cases(filters).order_by("pk").values_list("pk", "patient_pseudonym").iterator(chunk_size=2000)
    ):
        if pseudonym and pseudonym not in excluded:
            by_patient.setdefault(pseudonym, []).append(pk)
    patients = sorted(by_patient, key=lambda pseudonym: _order_key(seed, pseudonym))
    wanted = int(len(patients) * policy.locked_fraction + 0.5)
    chosen: list[str] = []
    case_ids: list[int] = []
    for pseudonym in patients:
        if len(chosen) >= wanted:
            break
        if len(case_ids) + len(by_patient[pseudonym]) > policy.locked_max_cases:
            continue
        chosen.append(pseudonym)
        case_ids.extend(by_patient[pseudonym])
    return sorted(case_ids), sorted(chosen)


def lock(
    model_type: ModelType, policy: LearningPolicy, *, by: SystemActor = None, seed: int = 0
) -> LockedEvaluationSet:
    """A new active locked set of ``model_type`` (``IntegrityError`` if one is active already)."""
    case_ids, patients = choose(model_type, policy, seed=seed)
    labels: dict[str, int] = {}
    path = "deidentified__" + "__".join(model_type.label_field.split("."))
    for (label,) in Case.objects.filter(pk__in=case_ids).values_list(path).iterator(chunk_size=2000):
        labels[str(label)] = labels.get(str(label), 0) + 1
    with transaction.atomic():
        locked = LockedEvaluationSet.objects.create(
            model_type=model_type,
            cohort=model_type.cohort,
            case_ids=case_ids,
            case_count=len(case_ids),
            patient_count=len(patients),
            label_counts=labels,
            seed=seed,
            reason=f"Locked under {policy}.",
            created_by=by,
        )
        LockedPatient.objects.bulk_create(
            [LockedPatient(locked_set=locked, pseudonym=pseudonym) for pseudonym in patients], batch_size=2000
        )
    return locked


def needs_renewal(locked: LockedEvaluationSet, policy: LearningPolicy, *, now: dt.datetime | None = None) -> bool:
    if policy.locked_renew_days is None:
        return False
    return (now or timezone.now()) - locked.created_at >= dt.timedelta(days=policy.locked_renew_days)


def current_locked_set(model_type: ModelType, policy: LearningPolicy) -> LockedEvaluationSet:
    """The model type's active locked set: locked now if there is none, renewed if the policy says."""
    active = LockedEvaluationSet.objects.filter(model_type=model_type, status=LockedEvaluationSet.Status.ACTIVE).first()
    if active is not None and not needs_renewal(active, policy):
        return active
    if active is not None:
        active.retire(reason=f"Renewed after {policy.locked_renew_days} days under {policy}.")
    try:
        return lock(model_type, policy, seed=(active.seed + 1) if active is not None else 0)
    except IntegrityError:
        # Another process locked one at the same moment (one active set per model type).
        return LockedEvaluationSet.objects.get(model_type=model_type, status=LockedEvaluationSet.Status.ACTIVE)


def seen_in_training(locked: LockedEvaluationSet, *datasets: DatasetSnapshot | None) -> int:
    """Locked cases whose patient is in a train or validation split of any of ``datasets``."""
    ids: set[int] = set()
    for dataset in datasets:
        if dataset is None:
            continue
        manifest = dataset.manifest or {}
        for split in ("train", "validation"):
            ids.update(int(pk) for pk in manifest.get(split, []))
    if not ids:
        return 0
    trained: set[str] = set()
    id_list = sorted(ids)
    for start in range(0, len(id_list), 5000):
        trained.update(
            Case.objects.filter(pk__in=id_list[start : start + 5000]).values_list("patient_pseudonym", flat=True)
        )
    locked_patients = Case.objects.filter(pk__in=locked.case_ids).values_list("pk", "patient_pseudonym")
    return sum(1 for _pk, pseudonym in locked_patients if pseudonym in trained)
