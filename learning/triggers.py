"""Whether a model type's policy calls for a cycle now: each trigger with its figure.

``evaluate`` reads; it opens nothing. Every trigger is reported, fired or not, so the command's
``--dry-run`` and the admin can say why a cycle did (or did not) start.
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


def new_cases_since(model_type: ModelType, champion: ModelVersion) -> int:
    """Approved cases of the cohort reviewed after the champion's dataset was built."""
    dataset = champion.dataset
    since = (dataset.finished_at or dataset.created_at) if dataset is not None else champion.created_at
    return Case.objects.filter(cohort=model_type.cohort, status=Case.Status.APPROVED, reviewed_at__gt=since).count()


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
