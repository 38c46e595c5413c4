"""Every trigger at its boundary, the periodic pass, and the dataset step on real cases."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from cases.models import Case
from learning import health, triggers
from learning.cycles import advance
from learning.models import LearningCycle
from learning.system import loop_user
from learning.tasks import run_once
from tests.training.factories import DIAGNOSES, approved_cohort
from training.datasets import build_snapshot
from training.models import DatasetSnapshot, LockedEvaluationSet, TrainingJob

Status = LearningCycle.Status


def fired(world, policy) -> dict[str, bool]:
    return {check.trigger: check.fired for check in triggers.evaluate(world.model_type, policy)}


def test_new_cases_fire_at_the_threshold_and_not_one_below(world):
    cases = approved_cohort(world.model_type.cohort, patients=5, diagnoses=DIAGNOSES[:2])
    # The champion's dataset was built before these cases were reviewed.
    DatasetSnapshot.objects.filter(pk=world.dataset.pk).update(finished_at=timezone.now() - dt.timedelta(days=1))
    assert Case.objects.filter(pk__in=[case.pk for case in cases], reviewed_at__isnull=False).count() == 5
    assert fired(world, world.policy(trigger_new_cases=5))["new_cases"] is True
    assert fired(world, world.policy(trigger_new_cases=6))["new_cases"] is False
    # Cases reviewed before the champion's dataset do not count.
    DatasetSnapshot.objects.filter(pk=world.dataset.pk).update(finished_at=timezone.now() + dt.timedelta(days=1))
    assert fired(world, world.policy(trigger_new_cases=1))["new_cases"] is False


def test_degradation_fires_only_when_monitoring_says_so(world, monkeypatch):
    policy = world.policy(trigger_on_degradation=True)
    assert fired(world, policy)["degradation"] is False  # no figures yet
    monkeypatch.setattr(health, "current", lambda version: health.Health(degraded=False))
    assert fired(world, policy)["degradation"] is False
    monkeypatch.setattr(health, "current", lambda version: health.Health(degraded=True))
    assert fired(world, policy)["degradation"] is True


def test_drift_fires_above_the_threshold_and_not_at_it(world, monkeypatch):
    monkeypatch.setattr(
        health, "current", lambda version: health.Health(degraded=False, drift={"findings.spo2": 0.25, "age": 0.1})
    )
    assert fired(world, world.policy(trigger_drift_psi=0.25))["drift"] is False
    checks = triggers.evaluate(world.model_type, world.policy(trigger_drift_psi=0.2499))
    drift = next(check for check in checks if check.trigger == "drift")
    assert drift.fired is True
    assert drift.detail == {"input": "findings.spo2", "psi": 0.25, "threshold": 0.2499}


def test_the_schedule_fires_when_the_last_cycle_is_old_enough(world):
    policy = world.policy(trigger_every_days=7)
    assert fired(world, policy)["schedule"] is True  # no cycle yet
    cycle = LearningCycle.objects.create(
        model_type=world.model_type, policy=policy, trigger="manual", status=Status.CANCELLED
    )
    assert fired(world, policy)["schedule"] is False
    LearningCycle.objects.filter(pk=cycle.pk).update(created_at=timezone.now() - dt.timedelta(days=7))
    assert fired(world, policy)["schedule"] is True


def test_a_trigger_left_empty_is_not_checked(world):
    policy = world.policy(
        trigger_new_cases=None,
        trigger_drift_psi=None,
        trigger_every_days=None,
        trigger_on_degradation=False,
        rollback_action="off",
    )
    assert triggers.evaluate(world.model_type, policy) == []


def test_the_periodic_pass_opens_one_cycle_when_a_trigger_fires_and_then_advances_it(world):
    policy = world.policy(trigger_every_days=1)
    approved_cohort(world.model_type.cohort, patients=30, diagnoses=DIAGNOSES[:2])
    summary = run_once()
    assert len(summary["opened"]) == 1
    cycle = LearningCycle.objects.get(pk=summary["opened"][0])
    assert (cycle.trigger, cycle.policy, cycle.champion) == ("schedule", policy, world.champion)
    # Its first step made the dataset; the next pass advances the same cycle, never opens another.
    assert cycle.dataset is not None
    assert cycle.locked_set == world.locked
    summary = run_once()
    assert summary["opened"] == []
    assert LearningCycle.objects.filter(model_type=world.model_type).count() == 1


def test_a_disabled_policy_opens_nothing(world):
    world.policy(trigger_every_days=1, enabled=False)
    assert run_once()["opened"] == []


def test_the_dataset_step_builds_on_real_cases_and_submits_the_recipe_as_the_loops_jobs(world, monkeypatch):
    # The real locked set this time: chosen from the cohort's cases, kept out of the dataset.
    monkeypatch.undo()
    LockedEvaluationSet.objects.filter(pk=world.locked.pk).delete()
    approved_cohort(world.model_type.cohort, patients=40, diagnoses=DIAGNOSES[:2])
    policy = world.policy(
        locked_fraction=0.25,
        recipe=[{"algorithm": "logistic_regression", "grid": {"C": [0.1, 1.0]}}, {"algorithm": "sgd", "grid": {}}],
    )
    from learning.cycles import open_cycle

    cycle = open_cycle(world.model_type, trigger="manual")
    assert cycle is not None
    assert advance(cycle) == Status.WAITING_FOR_DATASET
    cycle.refresh_from_db()
    assert cycle.dataset is not None
    assert cycle.locked_set is not None
    assert cycle.locked_set.patient_count == 10
    assert advance(cycle) == Status.WAITING_FOR_DATASET  # still building
    build_snapshot(cycle.dataset.pk)
    assert advance(cycle) == Status.TRAINING
    cycle.refresh_from_db()
    assert not set(cycle.locked_set.case_ids) & set(cycle.dataset.case_ids())
    jobs = list(cycle.jobs.order_by("pk"))
    assert [(job.algorithm, job.hyperparameters.get("C")) for job in jobs] == [
        ("logistic_regression", 0.1),
        ("logistic_regression", 1.0),
        ("sgd", None),
    ]
    assert {job.created_by for job in jobs} == {loop_user()}
    assert all(job.dataset == cycle.dataset and job.status == TrainingJob.Status.QUEUED for job in jobs)
    assert policy.grid() == [(job.algorithm, job.hyperparameters) for job in jobs]


def test_a_failed_dataset_fails_the_cycle_with_the_reason(world):
    world.policy()
    from learning.cycles import open_cycle

    cycle = open_cycle(world.model_type, trigger="manual")
    assert cycle is not None
    advance(cycle)
    cycle.refresh_from_db()
    assert cycle.dataset is not None
    build_snapshot_error = None
    try:
        build_snapshot(cycle.dataset.pk)  # the cohort has no real cases: the build fails
    except Exception as exc:
        build_snapshot_error = exc
    assert build_snapshot_error is not None
    assert advance(cycle) == Status.FAILED
    cycle.refresh_from_db()
    assert f"Dataset {cycle.dataset.pk} failed" in cycle.outcome


@pytest.mark.parametrize("status", sorted(LearningCycle.OPEN))
def test_every_open_state_can_be_cancelled_and_nothing_finished_can(world, status):
    policy = world.policy()
    cycle = LearningCycle.objects.create(model_type=world.model_type, policy=policy, trigger="manual", status=status)
    cycle.cancel(by=world.lead, reason="Test.")
    from learning_engine.exceptions import TransitionError

    with pytest.raises(TransitionError):
        cycle.cancel(by=world.lead, reason="Again.")
