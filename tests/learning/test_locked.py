"""Locking a model type's evaluation set: unseen patients only, reproducible, renewed only under the policy."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from learning.locked import choose, current_locked_set, lock, seen_in_training
from tests.factories import UserFactory
from tests.learning.factories import policy, pseudonyms
from tests.training.factories import DIAGNOSES, ModelTypeFactory, approved_cohort
from training.datasets import build_snapshot, create_snapshot
from training.models import LockedEvaluationSet

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("media_root")]


def test_only_patients_no_model_trained_or_validated_on_are_locked():
    model_type = ModelTypeFactory.create(min_cases_to_train=8)
    approved_cohort(model_type.cohort, patients=20, diagnoses=DIAGNOSES[:2])
    snapshot = create_snapshot(model_type, by=UserFactory.create())
    build_snapshot(snapshot.pk)
    snapshot.refresh_from_db()
    later = approved_cohort(model_type.cohort, patients=20, diagnoses=DIAGNOSES[:2])

    _case_ids, patients = choose(model_type, policy(model_type, locked_fraction=0.99))

    trained = pseudonyms(snapshot.split_ids("train") + snapshot.split_ids("validation"))
    assert not trained & set(patients)
    # Every unseen patient is eligible: the new ones and the snapshot's test split.
    assert set(patients) == pseudonyms([case.pk for case in later]) | pseudonyms(snapshot.split_ids("test"))


def test_the_choice_is_a_seeded_fraction_of_patients_within_the_case_cap():
    model_type = ModelTypeFactory.create()
    approved_cohort(model_type.cohort, patients=40, cases_per_patient=2, diagnoses=DIAGNOSES[:2])
    terms = policy(model_type, locked_fraction=0.25, locked_max_cases=1000)
    ids, patients = choose(model_type, terms, seed=1)
    assert len(patients) == 10
    assert len(ids) == 20
    assert choose(model_type, terms, seed=1) == (ids, patients)
    assert choose(model_type, terms, seed=2)[1] != patients
    capped = choose(model_type, policy(model_type, locked_fraction=0.25, locked_max_cases=7), seed=1)
    assert len(capped[0]) <= 7
    assert len(capped[1]) == 3


def test_a_second_active_set_of_a_model_type_is_refused_by_the_database():
    from django.db import IntegrityError, transaction

    model_type = ModelTypeFactory.create()
    approved_cohort(model_type.cohort, patients=10, diagnoses=DIAGNOSES[:2])
    terms = policy(model_type)
    lock(model_type, terms)
    with pytest.raises(IntegrityError), transaction.atomic():
        lock(model_type, terms)


def test_the_set_is_renewed_only_when_the_policy_says_and_the_new_one_is_disjoint_from_training():
    model_type = ModelTypeFactory.create()
    approved_cohort(model_type.cohort, patients=30, diagnoses=DIAGNOSES[:2])
    never = policy(model_type, locked_renew_days=None)
    first = current_locked_set(model_type, never)
    LockedEvaluationSet.objects.filter(pk=first.pk).update(created_at=timezone.now() - dt.timedelta(days=400))
    assert current_locked_set(model_type, never).pk == first.pk

    yearly = policy(model_type, locked_renew_days=365)
    renewed = current_locked_set(model_type, yearly)
    assert renewed.pk != first.pk
    first.refresh_from_db()
    assert first.status == LockedEvaluationSet.Status.RETIRED
    assert "Renewed after 365 days" in first.reason
    assert current_locked_set(model_type, yearly).pk == renewed.pk


def test_seen_in_training_counts_locked_cases_of_patients_in_a_train_or_validation_split():
    model_type = ModelTypeFactory.create(min_cases_to_train=8)
    approved_cohort(model_type.cohort, patients=16, diagnoses=DIAGNOSES[:2])
    snapshot = create_snapshot(model_type, by=UserFactory.create())
    build_snapshot(snapshot.pk)
    snapshot.refresh_from_db()
    locked = lock(model_type, policy(model_type, locked_fraction=0.5))
    assert seen_in_training(locked, snapshot) == 0
    # A snapshot built before the lock on purpose: its training cases put into the locked set.
    trained = snapshot.split_ids("train")[:2]
    LockedEvaluationSet.objects.filter(pk=locked.pk).update(case_ids=[*locked.case_ids, *trained])
    locked.refresh_from_db()
    assert seen_in_training(locked, snapshot) == 2
    assert seen_in_training(locked, None) == 0
