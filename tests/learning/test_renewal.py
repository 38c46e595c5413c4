"""Renewing the locked evaluation set under the policy: on confirmed drift by a cycle's first step,
with post-drift cases, recorded and audited, patient-disjoint from every training set, and the
retired patients released to training only when the policy says."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone

from cases.models import Case
from learning.cycles import advance
from learning.locked import choose, lock, trained_pseudonyms
from learning.models import LearningCycle
from learning_engine import roles
from tests.conftest import jwt_client
from tests.factories import UserFactory
from tests.learning.factories import policy, pseudonyms
from tests.training.factories import DIAGNOSES, ModelTypeFactory, approved_cohort
from training.datasets import build_snapshot, create_snapshot
from training.models import DatasetSnapshot, LockedEvaluationSet

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("media_root")]
Status = LearningCycle.Status


def built(snapshot_id: int) -> DatasetSnapshot:
    build_snapshot(snapshot_id)
    return DatasetSnapshot.objects.get(pk=snapshot_id)


class Drifted:
    """A cohort before the drift (a locked set 10 days old, and a dataset trained on the rest) and,
    with ``fresh``, patients who arrived after it."""

    def __init__(self, *, fresh: int = 30, **terms: Any) -> None:
        self.model_type = ModelTypeFactory.create(min_cases_to_train=8)
        old = approved_cohort(self.model_type.cohort, patients=30, diagnoses=DIAGNOSES[:2])
        Case.objects.filter(pk__in=[case.pk for case in old]).update(reviewed_at=timezone.now() - dt.timedelta(days=30))
        first = policy(self.model_type, locked_fraction=0.3)
        self.old_set = lock(self.model_type, first)
        LockedEvaluationSet.objects.filter(pk=self.old_set.pk).update(created_at=timezone.now() - dt.timedelta(days=10))
        self.old_set.refresh_from_db()
        # The champion's dataset: every unlocked patient of before the drift.
        self.trained = built(create_snapshot(self.model_type, by=UserFactory.create()).pk)
        self.fresh = approved_cohort(self.model_type.cohort, patients=fresh, diagnoses=DIAGNOSES[:2]) if fresh else []
        values = {
            # Nearly every eligible patient: a set that took a trained patient would show it.
            "locked_fraction": 0.9,
            "locked_renew_on_drift": True,
            "locked_min_fresh_share": 0.5,
            "min_evaluation_cases": 5,
        }
        values.update(terms)
        self.policy = policy(self.model_type, **values)

    def cycle(self, trigger: str = LearningCycle.Trigger.DRIFT) -> LearningCycle:
        return LearningCycle.objects.create(
            model_type=self.model_type,
            policy=self.policy,
            trigger=trigger,
            trigger_detail={"input": "findings.crp", "psi": 0.6},
            status=Status.WAITING_FOR_DATASET,
        )


@pytest.mark.parametrize("release", [False, True])
def test_a_drift_cycle_renews_the_set_with_post_drift_cases_records_it_and_releases_only_by_policy(release):
    world = Drifted(locked_release_retired=release)
    cycle = world.cycle()

    assert advance(cycle) == Status.WAITING_FOR_DATASET
    cycle.refresh_from_db()

    world.old_set.refresh_from_db()
    new = LockedEvaluationSet.objects.get(model_type=world.model_type, status=LockedEvaluationSet.Status.ACTIVE)
    assert world.old_set.status == LockedEvaluationSet.Status.RETIRED
    assert world.old_set.released is release
    assert cycle.locked_set_id == new.pk  # champion and candidate are judged on this one set
    record = cycle.locked_renewal
    assert record["renewed"] is True
    assert record["cause"] == "drift"
    assert (record["retired_set"], record["new_set"], record["cases"]) == (world.old_set.pk, new.pk, new.case_count)
    assert record["released_to_training"] is release
    assert record["fresh_share"] >= 0.5
    assert record["policy_version"] == world.policy.version
    fresh_ids = {case.pk for case in world.fresh}
    assert record["fresh_cases"] == len(set(new.case_ids) & fresh_ids)
    # Audited: a step of the cycle says what was renewed and why; the sets' own reasons say it too.
    step = cycle.transitions.get(from_state=Status.WAITING_FOR_DATASET, to_state=Status.WAITING_FOR_DATASET)
    assert f"Locked set {world.old_set.pk}" in step.reason
    assert "confirmed drift" in step.reason
    assert f"learning cycle {cycle.pk}" in world.old_set.reason
    assert f"renewing set {world.old_set.pk} on drift" in new.reason
    # Patient-disjoint: no new locked patient is in any ready snapshot's train or validation split.
    new_patients = pseudonyms(new.case_ids)
    assert not new_patients & trained_pseudonyms(world.model_type.cohort)
    assert not new_patients & pseudonyms(world.trained.split_ids("train") + world.trained.split_ids("validation"))
    # The cycle's dataset leaves the new set out, and the old one unless the policy released it.
    assert cycle.dataset_id is not None
    dataset = built(cycle.dataset_id)
    in_dataset = pseudonyms(dataset.case_ids())
    assert not in_dataset & new_patients
    old_patients = pseudonyms(world.old_set.case_ids) - new_patients
    assert old_patients
    assert (old_patients <= in_dataset) is release
    assert not (old_patients & in_dataset) or release


def test_a_drift_renewal_waits_without_enough_post_drift_cases_and_says_why():
    world = Drifted(fresh=0)
    cycle = world.cycle()

    advance(cycle)
    cycle.refresh_from_db()

    world.old_set.refresh_from_db()
    assert world.old_set.status == LockedEvaluationSet.Status.ACTIVE
    assert cycle.locked_set_id == world.old_set.pk
    record = cycle.locked_renewal
    assert record["renewed"] is False
    assert "0% of them since the drift began; the policy needs 50%" in record["deferred"]
    step = cycle.transitions.get(from_state=Status.WAITING_FOR_DATASET, to_state=Status.WAITING_FOR_DATASET)
    assert "waits" in step.reason


@pytest.mark.parametrize(
    ("terms", "trigger", "recent_set"),
    [
        ({"locked_renew_on_drift": False}, LearningCycle.Trigger.DRIFT, False),
        ({}, LearningCycle.Trigger.NEW_CASES, False),
        ({}, LearningCycle.Trigger.DRIFT, True),
    ],
    ids=["policy-off", "not-a-drift-trigger", "set-locked-after-the-drift"],
)
def test_no_renewal_unless_the_policy_calls_for_it(terms, trigger, recent_set):
    world = Drifted(**terms)
    if recent_set:
        LockedEvaluationSet.objects.filter(pk=world.old_set.pk).update(created_at=timezone.now())
    cycle = world.cycle(trigger)

    advance(cycle)
    cycle.refresh_from_db()

    assert cycle.locked_set_id == world.old_set.pk
    assert cycle.locked_renewal == {}
    assert LockedEvaluationSet.objects.filter(model_type=world.model_type).count() == 1


def test_a_renewal_by_age_is_recorded_and_follows_the_release_term():
    world = Drifted(locked_renew_on_drift=False, locked_renew_days=7)
    cycle = world.cycle(LearningCycle.Trigger.SCHEDULE)

    advance(cycle)
    cycle.refresh_from_db()

    world.old_set.refresh_from_db()
    assert world.old_set.status == LockedEvaluationSet.Status.RETIRED
    assert world.old_set.released is False
    assert cycle.locked_renewal["cause"] == "age"
    assert cycle.locked_set_id == cycle.locked_renewal["new_set"]


def test_the_fresh_share_is_a_share():
    model_type = ModelTypeFactory.create()
    with pytest.raises(ValidationError) as raised:
        policy(model_type, locked_min_fresh_share=1.5)
    assert "locked_min_fresh_share" in raised.value.message_dict


def test_the_api_and_the_timeline_show_the_renewal_and_the_policy_terms(client, make_user):
    world = Drifted(locked_release_retired=True)
    cycle = world.cycle()
    advance(cycle)
    cycle.refresh_from_db()

    api = jwt_client(make_user(roles.ML_ENGINEER))
    detail = api.get(f"/api/v1/model-types/{world.model_type.slug}/learning-cycles/{cycle.pk}/").json()
    assert detail["locked_renewal"]["new_set"] == cycle.locked_set_id
    assert detail["policy"]["locked_renew_on_drift"] is True
    assert detail["policy"]["locked_min_fresh_share"] == 0.5
    assert detail["policy"]["locked_release_retired"] is True

    client.force_login(make_user(roles.CLINICAL_LEAD, is_staff=True))
    page = client.get(reverse("admin:learning_learningcycle_timeline", args=[world.model_type.slug])).content.decode()
    assert f"Renewed on drift: set {world.old_set.pk}" in page
    assert "released to training" in page
    assert "and on confirmed drift" in page
    change = client.get(reverse("admin:learning_learningcycle_change", args=[cycle.pk])).content.decode()
    assert f"set {cycle.locked_set_id} locked with" in change

    clinician = jwt_client(make_user(roles.CLINICIAN))
    assert clinician.get(f"/api/v1/model-types/{world.model_type.slug}/learning-cycles/{cycle.pk}/").status_code == 403


def test_patients_seen_since_the_drift_are_taken_first():
    model_type = ModelTypeFactory.create()
    old = approved_cohort(model_type.cohort, patients=30, diagnoses=DIAGNOSES[:2])
    Case.objects.filter(pk__in=[case.pk for case in old]).update(reviewed_at=timezone.now() - dt.timedelta(days=30))
    fresh = pseudonyms(case.pk for case in approved_cohort(model_type.cohort, patients=20, diagnoses=DIAGNOSES[:2]))
    terms = policy(model_type, locked_fraction=0.3)  # 15 of 50 patients

    _ids, since_drift = choose(model_type, terms, seed=3, fresh_since=timezone.now() - dt.timedelta(days=1))
    _ids, anytime = choose(model_type, terms, seed=3)

    assert len(since_drift) == len(anytime) == 15
    assert set(since_drift) <= fresh
    assert not set(anytime) <= fresh


def test_the_drift_began_with_the_first_snapshot_of_the_unbroken_run_that_showed_it():
    from learning.locked import drift_onset
    from monitoring.models import MonitoringSnapshot
    from tests.models_registry.registry.factories import ModelVersionFactory

    world = Drifted(trigger_drift_psi=0.25)
    champion = ModelVersionFactory.create(dataset=world.trained)
    now = timezone.now()

    def snapshot(hours_ago: int, psi: float, *, degraded: bool = False, inputs: int = 500) -> dt.datetime:
        at = now - dt.timedelta(hours=hours_ago)
        MonitoringSnapshot.objects.create(
            model_type=world.model_type,
            version=champion,
            computed_at=at,
            since=now - dt.timedelta(days=60),
            window_start=at - dt.timedelta(hours=24),
            predictions=0,
            predictions_total=0,
            labelled=0,
            correct=0,
            tolerance=0.05,
            alpha=0.05,
            psi_threshold=0.2,
            max_psi=psi,
            inputs=inputs,
            degraded=degraded,
        )
        return at - dt.timedelta(hours=24)

    snapshot(120, 0.9)  # an earlier episode that ended
    snapshot(96, 0.05)
    snapshot(72, 0.9, inputs=10)  # too few inputs to count, as the trigger reads it
    began = snapshot(48, 0.5)
    degraded_since = snapshot(24, 0.7, degraded=True)
    snapshot(1, 0.8, degraded=True)
    drift = world.cycle()
    LearningCycle.objects.filter(pk=drift.pk).update(champion=champion)
    drift.refresh_from_db()
    degradation = LearningCycle(
        model_type=world.model_type,
        policy=world.policy,
        trigger=LearningCycle.Trigger.DEGRADATION,
        champion=champion,
        created_at=drift.created_at,
    )

    assert drift_onset(drift) == began
    assert drift_onset(degradation) == degraded_since


def test_a_rollback_cycle_renews_an_aged_set_and_records_it_too():
    world = Drifted(locked_renew_on_drift=False, locked_renew_days=7)
    cycle = world.cycle(LearningCycle.Trigger.DEGRADATION)
    LearningCycle.objects.filter(pk=cycle.pk).update(kind=LearningCycle.Kind.ROLLBACK, status=Status.EVALUATING)
    cycle.refresh_from_db()

    from learning.cycles import _rollback_locked_set

    renewed = _rollback_locked_set(cycle)
    cycle.refresh_from_db()

    world.old_set.refresh_from_db()
    assert world.old_set.status == LockedEvaluationSet.Status.RETIRED
    assert cycle.locked_set_id == renewed.pk == cycle.locked_renewal["new_set"]
    assert cycle.locked_renewal["cause"] == "age"
    assert cycle.transitions.filter(reason__contains=f"Locked set {world.old_set.pk}").exists()
