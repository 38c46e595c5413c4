"""Locking a model type's evaluation set (``training.models.LockedEvaluationSet``), under its policy.

Which patients: approved, labelled cases of the cohort (the dataset builder's own selection,
``training.datasets.selected_cases``) whose patients are in no active locked set and in no ready
snapshot's train or validation split of the cohort, so no model trained so far has seen them. Of
those patients a seeded, reproducible ``policy.locked_fraction`` is taken (by a keyed hash of the
pseudonym, never by position), as many as fit ``policy.locked_max_cases``; their cases are the set.
From then on the dataset builder leaves every case of those patients out of every snapshot.

A set is renewed only under the policy, by a candidate cycle's first step (``prepare_renewal``,
then ``apply_renewal`` in the step's transaction), recorded in the cycle (``locked_renewal``) and
its audit trail:

- by age: ``policy.locked_renew_days`` after it was locked (rollback cycles too, through
  ``current_locked_set``);
- on confirmed drift (``policy.locked_renew_on_drift``): the cycle was opened by monitoring's drift
  or degradation trigger and the set was locked before that drift began (``drift_onset``). The new
  set takes patients with cases reviewed since the onset first; it is locked only if at least
  ``policy.locked_min_fresh_share`` of its cases are from since the onset and it holds the
  envelope's minimum of cases, else the renewal waits (the cycle keeps the current set and says why).

Either way the new set is chosen among patients no ready snapshot trained or validated on, so
neither the champion nor any candidate judged on it has seen them, and the dataset the cycle builds
next leaves them out. The old set's patients go back to training only when
``policy.locked_release_retired`` says so. Champion and candidate of a cycle are judged on the one
set the cycle recorded (``LearningCycle.locked_set``), never on a set renewed mid-cycle.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from cases.models import Case
from learning_engine.exceptions import TransitionError
from training.datasets import selected_cases
from training.models import DatasetSnapshot, LockedEvaluationSet, LockedPatient, ModelType

if TYPE_CHECKING:
    from learning.models import LearningCycle, LearningPolicy
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


def choose(
    model_type: ModelType, policy: LearningPolicy, *, seed: int = 0, fresh_since: dt.datetime | None = None
) -> tuple[list[int], list[str]]:
    """The case ids and patients a new locked set of ``model_type`` would take (nothing written).
    With ``fresh_since``, patients with a case reviewed since then are taken first."""
    filters = {
        "cohort": model_type.cohort,
        "min_quality": model_type.min_quality,
        "label_field": model_type.label_field,
    }
    excluded = trained_pseudonyms(model_type.cohort)
    by_patient: dict[str, list[int]] = {}
    fresh: set[str] = set()
    rows = selected_cases(filters).order_by("pk").values_list("pk", "patient_pseudonym", "reviewed_at")
    for pk, pseudonym, reviewed_at in rows.iterator(chunk_size=2000):
        if pseudonym and pseudonym not in excluded:
            by_patient.setdefault(pseudonym, []).append(pk)
            if fresh_since is not None and reviewed_at is not None and reviewed_at >= fresh_since:
                fresh.add(pseudonym)
    patients = sorted(by_patient, key=lambda pseudonym: (pseudonym not in fresh, _order_key(seed, pseudonym)))
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
    model_type: ModelType,
    policy: LearningPolicy,
    *,
    by: SystemActor = None,
    seed: int = 0,
    chosen: tuple[list[int], list[str]] | None = None,
    reason: str = "",
) -> LockedEvaluationSet:
    """A new active locked set of ``model_type`` (``IntegrityError`` if one is active already), of
    the ``chosen`` cases and patients or of those ``choose`` takes now."""
    case_ids, patients = chosen if chosen is not None else choose(model_type, policy, seed=seed)
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
            reason=reason or f"Locked under {policy}.",
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
        active.retire(
            reason=f"Renewed after {policy.locked_renew_days} days under {policy}.",
            release=policy.locked_release_retired,
        )
    try:
        return lock(model_type, policy, seed=(active.seed + 1) if active is not None else 0)
    except IntegrityError:
        # Another process locked one at the same moment (one active set per model type).
        return LockedEvaluationSet.objects.get(model_type=model_type, status=LockedEvaluationSet.Status.ACTIVE)


def drift_onset(cycle: LearningCycle) -> dt.datetime:
    """When the drift (or degradation) that opened ``cycle`` began: the start of the monitoring
    window of the first of the champion's snapshots, in the unbroken run up to the cycle's start,
    that showed it (drift: an input's PSI above the policy's threshold over at least
    ``MONITORING_MIN_INPUTS`` inputs, as the trigger reads it). Without such a snapshot: the cycle's
    start less one monitoring window."""
    from learning.models import LearningCycle
    from monitoring.models import MonitoringSnapshot

    fallback = cycle.created_at - dt.timedelta(hours=float(settings.MONITORING_WINDOW_HOURS))
    if cycle.champion_id is None:
        return fallback
    threshold = cycle.policy.trigger_drift_psi
    minimum = int(settings.MONITORING_MIN_INPUTS)
    rows = (
        MonitoringSnapshot.objects.filter(
            version_id=cycle.champion_id, ab_test__isnull=True, computed_at__lte=cycle.created_at
        )
        .order_by("-computed_at", "-id")
        .values_list("window_start", "degraded", "max_psi", "inputs")[:1000]
    )
    onset = None
    for window_start, degraded, max_psi, inputs in rows:
        if cycle.trigger == LearningCycle.Trigger.DEGRADATION:
            shows = degraded
        else:
            shows = threshold is not None and max_psi is not None and inputs >= minimum and max_psi > threshold
        if not shows:
            break
        onset = window_start
    return onset or fallback


@dataclass
class Renewal:
    """What a cycle's first step does to the locked set: ``chosen`` is None when it waits."""

    active: LockedEvaluationSet
    chosen: tuple[list[int], list[str]] | None
    record: dict[str, Any] = field(default_factory=dict)
    seed: int = 0

    @property
    def summary(self) -> str:
        record = self.record
        if self.chosen is None:
            return (
                f"Locked set {record['retired_set']} kept: renewal on {record['cause']} waits ({record['deferred']})."
            )
        fresh = (
            f", {record['fresh_cases']} of them ({record['fresh_share']:.0%}) reviewed since the drift began"
            if record.get("fresh_share") is not None
            else ""
        )
        kept = "released to training" if record["released_to_training"] else "kept out of training"
        return (
            f"Locked set {record['retired_set']} ({record['retired_cases']} cases) retired, {kept}; set "
            f"{record.get('new_set', '?')} locked: {record['cases']} cases of {record['patients']} patients{fresh}. "
            f"Why: {record['why']}"
        )


def _renewal_cause(
    active: LockedEvaluationSet, cycle: LearningCycle, *, now: dt.datetime
) -> tuple[str, str, dt.datetime | None]:
    from learning.models import LearningCycle

    policy = cycle.policy
    if needs_renewal(active, policy, now=now):
        return (
            "age",
            f"locked {(now - active.created_at).days} days ago; {policy} renews after {policy.locked_renew_days}.",
            None,
        )
    drift_triggers = {LearningCycle.Trigger.DRIFT, LearningCycle.Trigger.DEGRADATION}
    if policy.locked_renew_on_drift and cycle.kind == LearningCycle.Kind.CANDIDATE and cycle.trigger in drift_triggers:
        onset = drift_onset(cycle)
        if active.created_at < onset:
            return (
                "drift",
                f"confirmed {cycle.trigger} since {onset:%Y-%m-%d %H:%M} UTC (monitoring); the set was locked "
                f"{active.created_at:%Y-%m-%d %H:%M} UTC, before it, and {policy} renews on drift.",
                onset,
            )
    return "", "", None


def prepare_renewal(cycle: LearningCycle, *, now: dt.datetime | None = None) -> Renewal | None:
    """Whether the policy renews the model type's active locked set now, with the new set chosen
    (slow: reads the cohort; writes nothing). None: no active set, or no renewal due."""
    active = LockedEvaluationSet.objects.filter(
        model_type=cycle.model_type, status=LockedEvaluationSet.Status.ACTIVE
    ).first()
    if active is None:
        return None
    cause, why, onset = _renewal_cause(active, cycle, now=now or timezone.now())
    if not cause:
        return None
    policy = cycle.policy
    seed = active.seed + 1
    case_ids, patients = choose(cycle.model_type, policy, seed=seed, fresh_since=onset)
    fresh = None
    if onset is not None:
        fresh = sum(
            1
            for start in range(0, len(case_ids), 5000)
            for reviewed_at in Case.objects.filter(pk__in=case_ids[start : start + 5000]).values_list(
                "reviewed_at", flat=True
            )
            if reviewed_at is not None and reviewed_at >= onset
        )
    record: dict[str, Any] = {
        "renewed": False,
        "cause": cause,
        "why": why,
        "onset": onset.isoformat() if onset is not None else None,
        "retired_set": active.pk,
        "retired_cases": active.case_count,
        "cases": len(case_ids),
        "patients": len(patients),
        "fresh_cases": fresh,
        "fresh_share": (fresh / len(case_ids)) if fresh is not None and case_ids else None,
        "min_fresh_share": policy.locked_min_fresh_share if cause == "drift" else None,
        "released_to_training": policy.locked_release_retired,
        "policy_version": policy.version,
    }
    if cause == "drift":
        short = []
        if len(case_ids) < policy.min_evaluation_cases:
            short.append(f"{len(case_ids)} eligible cases; the envelope needs {policy.min_evaluation_cases}")
        share = record["fresh_share"] or 0.0
        if share < policy.locked_min_fresh_share:
            short.append(
                f"{share:.0%} of them since the drift began; the policy needs {policy.locked_min_fresh_share:.0%}"
            )
        if short:
            record["deferred"] = "; ".join(short)
            return Renewal(active=active, chosen=None, record=record, seed=seed)
    return Renewal(active=active, chosen=(case_ids, patients), record=record, seed=seed)


def apply_renewal(renewal: Renewal, cycle: LearningCycle) -> LockedEvaluationSet | None:
    """Retire the old set and lock the chosen one (call inside the step's transaction); None when
    the renewal waits. ``TransitionError`` when another process retired or locked meanwhile."""
    if renewal.chosen is None:
        return None
    policy = cycle.policy
    why = f"{renewal.record['why']} (learning cycle {cycle.pk})"
    renewal.active.retire(reason=f"Renewed on {renewal.record['cause']}: {why}", release=policy.locked_release_retired)
    try:
        new = lock(
            cycle.model_type,
            policy,
            seed=renewal.seed,
            chosen=renewal.chosen,
            reason=f"Locked under {policy}, renewing set {renewal.active.pk} on {renewal.record['cause']}: {why}",
        )
    except IntegrityError:
        raise TransitionError(f"Another locked set of {cycle.model_type.slug} was locked meanwhile.") from None
    renewal.record.update(renewed=True, new_set=new.pk)
    return new


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
