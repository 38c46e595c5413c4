"""Learning cycles step by step, on real models: the candidate chosen on the validation split, the
envelope on the locked set, the shadow test, the propose-only default, automatic promotion only
when the policy says, bad candidates rejected and never served, the rollback guard."""

from __future__ import annotations

import random
from typing import Any

import pytest
from django.test import TestCase

from alerts.models import AlertEvent
from learning import health
from learning.cycles import CycleRefused, advance, open_cycle
from learning.models import LearningCycle, LearningPolicy
from learning.system import loop_user
from learning_engine.exceptions import InvalidRequest
from models_registry.experiments.models import ABTest
from models_registry.models import ActivationHistory, ModelVersion
from models_registry.registry.registration import register_completed_job
from tests.models_registry.registry.factories import ModelVersionFactory, ready_snapshot, snapshot_rows
from tests.training.factories import TrainingJobFactory
from training.models import TrainingJob
from training.trainer import train

Status = LearningCycle.Status


def training_cycle(world, candidates: list[ModelVersion], policy: LearningPolicy | None = None) -> LearningCycle:
    """A cycle whose jobs (those of ``candidates``) have finished: the next step chooses."""
    policy = policy or world.policy()
    cycle = LearningCycle.objects.create(
        model_type=world.model_type,
        policy=policy,
        trigger=LearningCycle.Trigger.MANUAL,
        status=Status.TRAINING,
        champion=world.champion,
        locked_set=world.locked,
    )
    cycle.jobs.add(*[version.job for version in candidates if version.job is not None])
    return cycle


def evaluating_cycle(world, candidate: ModelVersion, policy: LearningPolicy | None = None) -> LearningCycle:
    cycle = training_cycle(world, [candidate], policy)
    assert advance(cycle) == Status.EVALUATING
    return cycle


def version_trained_on(world, rows_by_split: dict[str, list[dict[str, Any]]], **params: Any) -> ModelVersion:
    snapshot = ready_snapshot(world.model_type, by=world.engineer, seed=5, first_id=20_000)
    result = train(
        rows_by_split,
        algorithm=params.pop("algorithm", "logistic_regression"),
        hyperparameters=params,
        report=lambda progress: None,
        artifact_name=f"learning-test-{random.randrange(10**9)}",
    )
    job = TrainingJobFactory.create(completed=True, dataset=snapshot, created_by=world.engineer, result=result)
    register_completed_job(sender=TrainingJob, job_id=job.pk)
    return ModelVersion.objects.get(job=job)


def decide(monkeypatch, decision: str) -> None:
    """The A/B test's figures say ``decision`` (the statistics are the experiments' own, tested there)."""
    monkeypatch.setattr(ABTest, "evaluate", lambda self: {"decision": decision})


def never_served(version: ModelVersion) -> None:
    version.refresh_from_db()
    assert version.deployment_status == ModelVersion.Deployment.ARCHIVED
    assert version.approval_status == ModelVersion.Approval.PENDING
    assert not ABTest.objects.filter(version_b=version).exists()
    assert not ActivationHistory.objects.filter(to_version=version).exists()
    # Nor can anyone put it in front of a patient afterwards, not even in a split test.
    with pytest.raises(InvalidRequest):
        ABTest.check_setup(
            model_type=version.model_type,
            version_a=version.model_type.versions.active().get(),
            version_b=version,
            traffic_split=0.5,
            duration_hours=24,
            mode="split",
            min_labelled_per_arm=10,
            significance_level=0.05,
        )


# --- The good path -------------------------------------------------------------------------------------


def test_the_candidate_is_the_best_on_the_validation_split_and_the_others_are_archived(world):
    second = ready_snapshot(world.model_type, by=world.engineer, seed=2, first_id=1000)
    good = ModelVersionFactory.create(trained=True, dataset=second, created_by=world.engineer)
    shuffled = ModelVersionFactory.create(trained=True, dataset=second, created_by=world.engineer, shuffle_labels=True)
    assert good.job is not None
    assert shuffled.job is not None
    assert good.job.metrics["val_accuracy"] > shuffled.job.metrics["val_accuracy"]
    cycle = training_cycle(world, [shuffled, good])

    assert advance(cycle) == Status.EVALUATING
    cycle.refresh_from_db()
    assert cycle.candidate == good
    chosen = [entry for entry in cycle.candidates if entry["chosen"]]
    assert [entry["version"] for entry in chosen] == [good.pk]
    assert {entry["val_accuracy"] for entry in cycle.candidates} == {
        good.job.metrics["val_accuracy"],
        shuffled.job.metrics["val_accuracy"],
    }
    shuffled.refresh_from_db()
    assert shuffled.deployment_status == ModelVersion.Deployment.ARCHIVED


def test_the_choice_never_reads_the_test_split(world):
    second = ready_snapshot(world.model_type, by=world.engineer, seed=2, first_id=1000)
    a = ModelVersionFactory.create(trained=True, dataset=second, created_by=world.engineer)
    b = ModelVersionFactory.create(trained=True, dataset=second, created_by=world.engineer, hyperparameters={"C": 0.01})
    assert a.job is not None
    assert b.job is not None
    # Make the test split say the opposite of the validation split: the validation split still decides.
    TrainingJob.objects.filter(pk=a.job.pk).update(metrics={**a.job.metrics, "val_accuracy": 0.9, "accuracy": 0.1})
    TrainingJob.objects.filter(pk=b.job.pk).update(metrics={**b.job.metrics, "val_accuracy": 0.8, "accuracy": 1.0})
    cycle = training_cycle(world, [a, b])
    advance(cycle)
    cycle.refresh_from_db()
    assert cycle.candidate == a


def test_training_waits_for_every_job_and_fails_when_none_completed(world):
    second = ready_snapshot(world.model_type, by=world.engineer, seed=2, first_id=1000)
    running = TrainingJob.submit(model_type=world.model_type, by=world.engineer, dataset=second)
    cycle = training_cycle(world, [])
    cycle.jobs.add(running)
    assert advance(cycle) == Status.TRAINING
    running.cancel(by=world.engineer, reason="Test.")
    assert advance(cycle) == Status.FAILED
    cycle.refresh_from_db()
    assert "Every training job failed" in cycle.outcome


def test_a_candidate_within_the_envelope_goes_to_a_shadow_test_and_is_only_proposed(world, monkeypatch):
    second = ready_snapshot(world.model_type, by=world.engineer, seed=2, first_id=1000)
    good = ModelVersionFactory.create(trained=True, dataset=second, created_by=world.engineer)
    cycle = evaluating_cycle(world, good)

    with TestCase.captureOnCommitCallbacks(execute=True):
        assert advance(cycle) == Status.TESTING
    cycle.refresh_from_db()
    assert cycle.envelope_passed is True
    assert {item["name"] for item in cycle.envelope["criteria"]} >= {
        "evaluation_cases",
        "unseen",
        "non_inferiority",
        "calibration",
    }
    assert all(item["passed"] is not False for item in cycle.envelope["criteria"])
    test = cycle.ab_test
    assert test is not None
    assert test.is_running()
    assert (test.mode, test.version_a, test.version_b) == ("shadow", world.champion, good)
    good.refresh_from_db()
    assert good.approval_status == ModelVersion.Approval.APPROVED
    assert good.approved_by == cycle.policy.created_by
    assert str(cycle.policy) in good.approval_note

    decide(monkeypatch, "hold")
    assert advance(cycle) == Status.TESTING
    decide(monkeypatch, "ship_b")
    with TestCase.captureOnCommitCallbacks(execute=True):
        assert advance(cycle) == Status.PROPOSED
    # Proposed, not promoted: the champion serves, the test runs, the clinical lead is told.
    world.champion.refresh_from_db()
    assert world.champion.deployment_status == ModelVersion.Deployment.ACTIVE
    test.refresh_from_db()
    assert test.is_running()
    event = AlertEvent.objects.get(event_type="promotion.proposed")
    assert event.data["cycle"] == cycle.pk
    assert event.data["candidate"] == good.pk

    # The clinical lead concludes the test with promotion: the cycle records it.
    test.conclude(by=world.lead, reason="Reviewed.", promote=True)
    assert advance(cycle) == Status.PROMOTED
    good.refresh_from_db()
    assert good.deployment_status == ModelVersion.Deployment.ACTIVE


def test_a_split_test_takes_the_policys_share(world):
    second = ready_snapshot(world.model_type, by=world.engineer, seed=2, first_id=1000)
    good = ModelVersionFactory.create(trained=True, dataset=second, created_by=world.engineer)
    cycle = evaluating_cycle(world, good, world.policy(test_mode="split", test_traffic_split=0.2))
    advance(cycle)
    cycle.refresh_from_db()
    assert cycle.ab_test is not None
    assert (cycle.ab_test.mode, cycle.ab_test.traffic_split) == ("split", 0.2)


def test_automatic_promotion_only_when_the_policy_allows_it_with_a_history_row_naming_it(world, monkeypatch):
    second = ready_snapshot(world.model_type, by=world.engineer, seed=2, first_id=1000)
    good = ModelVersionFactory.create(trained=True, dataset=second, created_by=world.engineer)
    policy = world.policy(auto_promote=True)
    cycle = evaluating_cycle(world, good, policy)
    advance(cycle)
    decide(monkeypatch, "ship_b")
    assert advance(cycle) == Status.PROMOTED
    good.refresh_from_db()
    assert good.deployment_status == ModelVersion.Deployment.ACTIVE
    history = ActivationHistory.objects.filter(to_version=good).get()
    assert str(policy) in history.reason
    assert f"learning cycle {cycle.pk}" in history.reason
    assert history.actor == loop_user()


def test_a_test_that_decides_rollback_keeps_the_champion(world, monkeypatch):
    second = ready_snapshot(world.model_type, by=world.engineer, seed=2, first_id=1000)
    good = ModelVersionFactory.create(trained=True, dataset=second, created_by=world.engineer)
    cycle = evaluating_cycle(world, good, world.policy(auto_promote=True))
    advance(cycle)
    decide(monkeypatch, "rollback")
    assert advance(cycle) == Status.NOT_PROMOTED
    cycle.refresh_from_db()
    assert cycle.ab_test is not None
    assert cycle.ab_test.status == ABTest.Status.STOPPED
    world.champion.refresh_from_db()
    assert world.champion.deployment_status == ModelVersion.Deployment.ACTIVE


def test_a_refused_test_start_fails_the_cycle_and_rolls_its_step_back(world):
    second = ready_snapshot(world.model_type, by=world.engineer, seed=2, first_id=1000)
    good = ModelVersionFactory.create(trained=True, dataset=second, created_by=world.engineer)
    other = ModelVersionFactory.create(
        trained=True, dataset=second, created_by=world.engineer, hyperparameters={"C": 0.5}
    )
    other.approve(by=world.lead)
    # Somebody's own A/B test of the model type is running: the cycle's test cannot start.
    ABTest.start(
        model_type=world.model_type,
        version_a=world.champion,
        version_b=other,
        traffic_split=0.5,
        duration_hours=24,
        by=world.engineer,
    )
    cycle = evaluating_cycle(world, good)
    assert advance(cycle) == Status.FAILED
    cycle.refresh_from_db()
    assert "ab_test_running" in cycle.outcome
    good.refresh_from_db()
    assert good.approval_status == ModelVersion.Approval.PENDING  # the approval rolled back with the step
    assert [step.to_state for step in cycle.transitions.order_by("pk")] == ["evaluating", "failed"]


def test_a_policy_asking_for_a_person_waits_for_the_approval(world):
    second = ready_snapshot(world.model_type, by=world.engineer, seed=2, first_id=1000)
    good = ModelVersionFactory.create(trained=True, dataset=second, created_by=world.engineer)
    cycle = evaluating_cycle(world, good, world.policy(test_approval="person"))
    assert advance(cycle) == Status.AWAITING_APPROVAL
    assert advance(cycle) == Status.AWAITING_APPROVAL
    good.approve(by=world.lead, note="Reviewed the envelope.")
    assert advance(cycle) == Status.TESTING


@pytest.mark.parametrize("lapse", ["deactivated", "role_withdrawn"])
def test_a_pre_authorisation_lapses_with_its_authors_account_or_role(world, lapse):
    second = ready_snapshot(world.model_type, by=world.engineer, seed=2, first_id=1000)
    good = ModelVersionFactory.create(trained=True, dataset=second, created_by=world.engineer)
    cycle = evaluating_cycle(world, good)
    author = cycle.policy.created_by
    if lapse == "deactivated":
        author.is_active = False
        author.save(update_fields=["is_active"])
    else:
        author.groups.clear()
    assert advance(cycle) == Status.AWAITING_APPROVAL
    good.refresh_from_db()
    assert good.approval_status == ModelVersion.Approval.PENDING
    assert not ABTest.objects.filter(version_b=good).exists()
    assert "may no longer approve" in cycle.transitions.latest("pk").reason


# --- Bad candidates: rejected by the envelope, never served ---------------------------------------------


def test_a_candidate_trained_on_shuffled_labels_is_rejected_and_never_served(world):
    second = ready_snapshot(world.model_type, by=world.engineer, seed=2, first_id=1000)
    bad = ModelVersionFactory.create(trained=True, dataset=second, created_by=world.engineer, shuffle_labels=True)
    cycle = evaluating_cycle(world, bad, world.policy(test_mode="split", test_traffic_split=0.5, auto_promote=True))
    assert advance(cycle) == Status.REJECTED
    cycle.refresh_from_db()
    assert cycle.envelope_passed is False
    assert "non_inferiority" in cycle.envelope["failed"]
    never_served(bad)


def test_a_candidate_worse_for_women_is_rejected_on_that_subgroup(world):
    splits = snapshot_rows(ready_snapshot(world.model_type, by=world.engineer, seed=3, first_id=3000))
    flip = {"J18.9": "J06.9", "J06.9": "J18.9"}
    # The candidate learned the women's diagnoses backwards (trees learn the interaction with sex).
    taught = {
        split: [{**row, "label": flip[row["label"]]} if row["sex"] == "female" else row for row in rows]
        for split, rows in splits.items()
    }
    bad = version_trained_on(world, taught, algorithm="gradient_boosting", max_iter=50)
    cycle = evaluating_cycle(world, bad, world.policy(non_inferiority_margin=0.5, max_calibration_error=1.0))
    assert advance(cycle) == Status.REJECTED
    cycle.refresh_from_db()
    failed = cycle.envelope["failed"]
    assert "subgroup:sex=female" in failed
    assert "subgroup:sex=male" not in failed
    assert "non_inferiority" not in failed
    never_served(bad)


def test_a_miscalibrated_candidate_is_rejected_on_calibration(world):
    splits = snapshot_rows(ready_snapshot(world.model_type, by=world.engineer, seed=4, first_id=4000))
    # Regularised to near-uniform probabilities: the right answers at about 50% confidence.
    bad = version_trained_on(world, splits, C=1e-5)
    cycle = evaluating_cycle(world, bad, world.policy(max_calibration_error=0.1))
    assert advance(cycle) == Status.REJECTED
    cycle.refresh_from_db()
    assert cycle.envelope["failed"] == ["calibration"]
    never_served(bad)


# --- Opening -------------------------------------------------------------------------------------------


def test_two_triggers_at_once_open_one_cycle(world):
    world.policy()
    first = open_cycle(world.model_type, trigger=LearningCycle.Trigger.NEW_CASES)
    second = open_cycle(world.model_type, trigger=LearningCycle.Trigger.DRIFT)
    assert first is not None
    assert second is None
    assert LearningCycle.objects.filter(model_type=world.model_type).count() == 1


def test_a_finished_cycle_frees_the_slot(world):
    world.policy()
    first = open_cycle(world.model_type, trigger=LearningCycle.Trigger.NEW_CASES)
    assert first is not None
    first.cancel(by=world.lead, reason="Not now.")
    assert open_cycle(world.model_type, trigger=LearningCycle.Trigger.MANUAL) is not None


@pytest.mark.parametrize(
    ("setup", "code"),
    [("no_policy", "no_policy"), ("disabled", "policy_disabled"), ("no_champion", "no_champion")],
)
def test_a_cycle_is_refused_without_a_policy_an_enabled_one_or_a_champion(world, setup, code):
    if setup == "disabled":
        world.policy(enabled=False)
    if setup == "no_champion":
        world.policy()
        world.champion.deactivate(by=world.lead, reason="Test.")
    with pytest.raises(CycleRefused) as caught:
        open_cycle(world.model_type, trigger=LearningCycle.Trigger.MANUAL)
    assert caught.value.code == code


def test_a_stale_copy_cannot_take_a_step_a_fresher_copy_took(world):
    world.policy()
    cycle = open_cycle(world.model_type, trigger=LearningCycle.Trigger.MANUAL)
    assert cycle is not None
    stale = LearningCycle.objects.get(pk=cycle.pk)
    cycle.cancel(by=world.lead, reason="Changed my mind.")
    from learning_engine.exceptions import TransitionError

    with pytest.raises(TransitionError):
        stale.move(Status.TRAINING, reason="Late.")
    assert cycle.transitions.count() == 2


# --- The rollback guard ----------------------------------------------------------------------------------


def degraded_world(world, monkeypatch):
    """The champion was replaced by a worse version, which monitoring now finds degraded."""
    second = ready_snapshot(world.model_type, by=world.engineer, seed=2, first_id=1000)
    worse = ModelVersionFactory.create(
        trained=True, dataset=second, created_by=world.engineer, hyperparameters={"C": 0.001}
    )
    worse.approve(by=world.lead)
    worse.activate(by=world.lead, reason="New version.")
    monkeypatch.setattr(health, "current", lambda version: health.Health(degraded=version.pk == worse.pk, drift={}))
    return worse


def test_the_rollback_guard_proposes_by_default(world, monkeypatch):
    from learning.cycles import open_cycle_if_triggered

    worse = degraded_world(world, monkeypatch)
    world.policy(trigger_on_degradation=False)
    cycle = open_cycle_if_triggered(world.model_type)
    assert cycle is not None
    assert cycle.kind == LearningCycle.Kind.ROLLBACK
    assert cycle.candidate == world.champion
    with TestCase.captureOnCommitCallbacks(execute=True):
        assert advance(cycle) == Status.PROPOSED
    worse.refresh_from_db()
    assert worse.deployment_status == ModelVersion.Deployment.ACTIVE
    assert AlertEvent.objects.get(event_type="rollback.proposed").data["to_version"] == world.champion.pk
    ModelVersion.rollback(world.model_type, by=world.lead, reason="Agreed.")
    assert advance(cycle) == Status.ROLLED_BACK


def test_the_rollback_guard_performs_when_the_policy_says(world, monkeypatch):
    from learning.cycles import open_cycle_if_triggered

    worse = degraded_world(world, monkeypatch)
    world.policy(rollback_action="perform")
    cycle = open_cycle_if_triggered(world.model_type)
    assert cycle is not None
    assert advance(cycle) == Status.ROLLED_BACK
    world.champion.refresh_from_db()
    worse.refresh_from_db()
    assert world.champion.deployment_status == ModelVersion.Deployment.ACTIVE
    assert worse.deployment_status == ModelVersion.Deployment.INACTIVE
