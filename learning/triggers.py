"""Whether a model type's policy calls for a cycle now: each trigger with its figure.

``evaluate`` reads; it opens nothing. Every trigger is reported, fired or not, so the command's
``--dry-run`` and the admin can say why a cycle did (or did not) start.

``backoff`` says whether the last candidate cycle ended rejected, failed or not promoted (its A/B
test kept the champion) recently enough that a fired trigger must not open another on the same data
(the loop retrained the same cases every run while drift stayed above its threshold, and a candidate
that lost its A/B test would be retrained on the same cases and tested again). It holds until the
policy's ``trigger_new_cases`` of approved cases arrived since that cycle's dataset, or
``retry_after_hours`` passed since it ended, whichever comes first; a new policy version or a
different champion lifts it at once. It holds candidate cycles only: the rollback guard is never
held (``learning.cycles.plan_opening``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from django.utils import timezone

from cases.models import Case
from learning import health
from learning.models import LearningCycle, LearningPolicy
from models_registry.models import ActivationHistory, ModelVersion
from training.models import ModelType


@dataclass(frozen=True, slots=True)
class Check:
    trigger: str
    fired: bool
    detail: dict[str, Any] = field(default_factory=dict)
    text: str = ""


def champion_of(model_type: ModelType) -> ModelVersion | None:
    return ModelVersion.objects.active().filter(model_type=model_type).select_related("dataset").first()


def previous_version(model_type: ModelType, champion: ModelVersion | None) -> ModelVersion | None:
    """The version a rollback would re-activate (``ModelVersion.rollback``'s rule), if it still can be."""
    rows = ActivationHistory.objects.filter(model_type=model_type, to_version__isnull=False)
    if champion is not None:
        rows = rows.exclude(to_version_id=champion.pk)
    row = rows.select_related("to_version").order_by("-created_at", "-id").first()
    if row is None or row.to_version is None:
        return None
    target = row.to_version
    return target if target.deployment_status == ModelVersion.Deployment.INACTIVE else None


def approved_cases_since(model_type: ModelType, since: dt.datetime) -> int:
    return Case.objects.filter(cohort=model_type.cohort, status=Case.Status.APPROVED, reviewed_at__gt=since).count()


def new_cases_since(model_type: ModelType, champion: ModelVersion) -> int:
    """Approved cases of the cohort reviewed after the champion's dataset was built."""
    dataset = champion.dataset
    since = (dataset.finished_at or dataset.created_at) if dataset is not None else champion.created_at
    return approved_cases_since(model_type, since)


HELD_AFTER: frozenset[str] = frozenset(
    {LearningCycle.Status.REJECTED, LearningCycle.Status.FAILED, LearningCycle.Status.NOT_PROMOTED}
)


@dataclass(frozen=True, slots=True)
class Backoff:
    cycle: LearningCycle
    new_cases: int  # approved cases since the held cycle's dataset
    more_cases: int | None  # still needed to lift it; None when the policy has no new-cases trigger
    until: dt.datetime
    text: str


def _utc(moment: dt.datetime) -> str:
    return f"{moment.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC"


def backoff(model_type: ModelType, policy: LearningPolicy, *, now: dt.datetime | None = None) -> Backoff | None:
    """The back-off holding candidate cycles of ``model_type`` now, or None (see the module's text)."""
    now = now or timezone.now()
    last = (
        LearningCycle.objects.filter(model_type=model_type, kind=LearningCycle.Kind.CANDIDATE)
        .exclude(status__in=LearningCycle.OPEN)
        .select_related("dataset")
        .order_by("-created_at", "-id")
        .first()
    )
    if last is None or last.status not in HELD_AFTER or last.policy_id != policy.pk:
        return None
    champion = champion_of(model_type)
    if champion is None or last.champion_id != champion.pk:
        return None
    ended = last.finished_at or last.updated_at
    until = ended + dt.timedelta(hours=policy.retry_after_hours)
    if now >= until:
        return None
    dataset = last.dataset
    since = (dataset.finished_at or dataset.created_at) if dataset is not None else last.created_at
    count = approved_cases_since(model_type, since)
    more = None if policy.trigger_new_cases is None else policy.trigger_new_cases - count
    if more is not None and more <= 0:
        return None
    cases = f"{more} more approved case{'s' if more != 1 else ''} or " if more is not None else ""
    text = (
        f"waiting: last cycle {last.pk} {last.status} at {_utc(ended)} on the same data; "
        f"{cases}until {_utc(until)} (retry after {policy.retry_after_hours} h)."
    )
    return Backoff(cycle=last, new_cases=count, more_cases=more, until=until, text=text)


def evaluate(model_type: ModelType, policy: LearningPolicy, *, now: dt.datetime | None = None) -> list[Check]:
    """Every trigger of ``policy`` for ``model_type`` (in a fixed order), with its figure."""
    now = now or timezone.now()
    champion = champion_of(model_type)
    checks: list[Check] = []
    if champion is None:
        return [Check("none", False, {}, "No active version: there is no champion to improve on.")]
    reading = health.current(champion)

    if policy.trigger_new_cases is not None:
        count = new_cases_since(model_type, champion)
        checks.append(
            Check(
                LearningCycle.Trigger.NEW_CASES,
                count >= policy.trigger_new_cases,
                {"new_cases": count, "threshold": policy.trigger_new_cases},
                f"{count} approved cases since the champion's dataset (threshold {policy.trigger_new_cases}).",
            )
        )
    if policy.trigger_on_degradation or policy.rollback_action != LearningPolicy.RollbackAction.OFF:
        degraded = bool(reading is not None and reading.degraded)
        checks.append(
            Check(
                LearningCycle.Trigger.DEGRADATION,
                degraded,
                {"degraded": degraded, "monitored": reading is not None},
                "Monitoring finds the champion degraded." if degraded else "No degradation reported.",
            )
        )
    if policy.trigger_drift_psi is not None:
        worst = reading.worst_drift if reading is not None else None
        fired = worst is not None and worst[1] > policy.trigger_drift_psi
        checks.append(
            Check(
                LearningCycle.Trigger.DRIFT,
                fired,
                {
                    "input": worst[0] if worst else None,
                    "psi": worst[1] if worst else None,
                    "threshold": policy.trigger_drift_psi,
                },
                f"Largest drift: PSI {worst[1]:.3f} on {worst[0]} (threshold {policy.trigger_drift_psi:g})."
                if worst
                else "No drift figures.",
            )
        )
    if policy.trigger_every_days is not None:
        last = LearningCycle.objects.filter(model_type=model_type).order_by("-created_at").first()
        due = last is None or now - last.created_at >= dt.timedelta(days=policy.trigger_every_days)
        checks.append(
            Check(
                LearningCycle.Trigger.SCHEDULE,
                due,
                {"last_cycle": last.pk if last else None, "every_days": policy.trigger_every_days},
                "No cycle yet." if last is None else f"Last cycle began {last.created_at:%Y-%m-%d %H:%M} UTC.",
            )
        )
    return checks
