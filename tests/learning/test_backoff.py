"""The back-off: after a rejected, failed or not promoted candidate cycle, a trigger that keeps firing opens no
new cycle on the same data until enough new approved cases or the policy's cooldown; the rollback
guard is never held."""

from __future__ import annotations

import datetime as dt
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from learning import health
from learning.cycles import CycleRefused, open_cycle_if_triggered
from learning.models import LearningCycle
from learning.tasks import run_once
from tests.learning.test_cycles import degraded_world
from tests.training.factories import DIAGNOSES, approved_cohort
from training.models import DatasetSnapshot

Status = LearningCycle.Status


@pytest.fixture
def drifting(world, monkeypatch):
    """Drift stays above the policy's threshold; the champion's dataset was built a day ago."""
    monkeypatch.setattr(health, "current", lambda version: health.Health(degraded=False, drift={"age": 0.5}))
    DatasetSnapshot.objects.filter(pk=world.dataset.pk).update(finished_at=timezone.now() - dt.timedelta(days=1))
    world.dataset.refresh_from_db()
    return world


def ended(world, policy, status=Status.REJECTED, *, hours_ago: float = 0.0) -> LearningCycle:
    """A drift cycle on the champion's dataset that ended ``hours_ago`` with ``status``."""
    return LearningCycle.objects.create(
        model_type=world.model_type,
        policy=policy,
        trigger="drift",
        status=status,
        champion=world.champion,
        dataset=world.dataset,
        finished_at=timezone.now() - dt.timedelta(hours=hours_ago),
    )


def test_a_rejected_cycle_then_an_immediate_periodic_run_opens_nothing_and_says_why(drifting):
    policy = drifting.policy(trigger_drift_psi=0.25, trigger_new_cases=5, retry_after_hours=24)
    cycle = ended(drifting, policy)
    summary = run_once()
    assert summary["opened"] == []
    assert LearningCycle.objects.count() == 1
    [waiting] = summary["waiting"]
    assert waiting["model_type"] == drifting.model_type.slug
    assert f"waiting: last cycle {cycle.pk} rejected at " in waiting["reason"]
    assert "5 more approved cases or until " in waiting["reason"]


def test_after_the_cooldown_a_cycle_opens_and_not_a_minute_before(drifting):
    policy = drifting.policy(trigger_drift_psi=0.25, trigger_new_cases=None, retry_after_hours=24)
    cycle = ended(drifting, policy, hours_ago=24 - 1 / 60)
    assert run_once()["opened"] == []
    LearningCycle.objects.filter(pk=cycle.pk).update(finished_at=timezone.now() - dt.timedelta(hours=24))
    summary = run_once()
    assert len(summary["opened"]) == 1
    assert LearningCycle.objects.get(pk=summary["opened"][0]).trigger == "drift"


def test_enough_new_approved_cases_since_the_cycles_dataset_lift_it(drifting):
    policy = drifting.policy(trigger_drift_psi=0.25, trigger_new_cases=5, retry_after_hours=24 * 7)
    ended(drifting, policy)
    approved_cohort(drifting.model_type.cohort, patients=4, diagnoses=DIAGNOSES[:2])
    with pytest.raises(CycleRefused, match="1 more approved case or until") as refused:
        open_cycle_if_triggered(drifting.model_type)
    assert refused.value.code == "backing_off"
    approved_cohort(drifting.model_type.cohort, patients=1, diagnoses=DIAGNOSES[:2])
    cycle = open_cycle_if_triggered(drifting.model_type)
    assert cycle is not None
    assert cycle.kind == LearningCycle.Kind.CANDIDATE


@pytest.mark.parametrize(
    ("status", "held"),
    [
        (Status.REJECTED, True),
        (Status.FAILED, True),
        (Status.CANCELLED, False),
        (Status.NOT_PROMOTED, True),  # the A/B test kept the champion: same data, same candidate
        (Status.PROMOTED, False),
    ],
)
def test_only_a_rejected_failed_or_not_promoted_cycle_holds(drifting, status, held):
    policy = drifting.policy(trigger_drift_psi=0.25, trigger_new_cases=5)
    ended(drifting, policy, status)
    assert bool(run_once()["waiting"]) is held


def test_a_new_policy_version_lifts_it(drifting):
    policy = drifting.policy(trigger_drift_psi=0.25, trigger_new_cases=5)
    ended(drifting, policy)
    assert run_once()["waiting"]
    drifting.policy(trigger_drift_psi=0.25, trigger_new_cases=5, reason="Wider recipe.")
    assert len(run_once()["opened"]) == 1


def test_dry_run_says_why_no_cycle_opens(drifting):
    policy = drifting.policy(trigger_drift_psi=0.25, trigger_new_cases=5, retry_after_hours=24)
    cycle = ended(drifting, policy)
    out = StringIO()
    call_command("learning_cycle", "--model-type", drifting.model_type.slug, "--dry-run", stdout=out)
    text = out.getvalue()
    assert cycle.finished_at is not None
    finished = cycle.finished_at.astimezone(dt.UTC)
    until = finished + dt.timedelta(hours=24)
    assert "drift: FIRES." in text
    assert (
        f"Back-off: waiting: last cycle {cycle.pk} rejected at {finished:%Y-%m-%d %H:%M} UTC on the same data; "
        f"5 more approved cases or until {until:%Y-%m-%d %H:%M} UTC (retry after 24 h)."
    ) in text
    assert "The periodic task would open no cycle now" in text
    assert LearningCycle.objects.count() == 1


def test_the_rollback_guard_is_not_held(world, monkeypatch):
    worse = degraded_world(world, monkeypatch)
    policy = world.policy(trigger_on_degradation=True, trigger_new_cases=5, rollback_action="off")
    LearningCycle.objects.create(
        model_type=world.model_type,
        policy=policy,
        trigger="degradation",
        status=Status.REJECTED,
        champion=worse,
        finished_at=timezone.now(),
    )
    # Without the guard, the degradation trigger's candidate cycle is held...
    with pytest.raises(CycleRefused, match="waiting: last cycle"):
        open_cycle_if_triggered(world.model_type)
    # ...with it, the same rejected cycle (under the same policy) does not hold the rollback cycle.
    LearningCycle.objects.filter(model_type=world.model_type).update(
        policy=world.policy(trigger_on_degradation=True, trigger_new_cases=5, rollback_action="propose")
    )
    out = StringIO()
    call_command("learning_cycle", "--model-type", world.model_type.slug, "--dry-run", stdout=out)
    assert "Back-off" not in out.getvalue()
    assert "would open a cycle now (trigger degradation) (the rollback guard)." in out.getvalue()
    cycle = open_cycle_if_triggered(world.model_type)
    assert cycle is not None
    assert cycle.kind == LearningCycle.Kind.ROLLBACK
