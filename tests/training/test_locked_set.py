"""The dataset builder leaves every case of a locked evaluation set's patients out (issue 15)."""

from __future__ import annotations

import pytest

from cases.models import Case
from tests.factories import UserFactory
from tests.training.factories import DIAGNOSES, ModelTypeFactory, approved_cohort
from training.datasets import build_snapshot, create_snapshot, preview_snapshot
from training.models import DatasetSnapshot, LockedEvaluationSet, LockedPatient

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("media_root")]


def build(model_type) -> DatasetSnapshot:
    snapshot = create_snapshot(model_type, by=UserFactory.create())
    build_snapshot(snapshot.pk)
    snapshot.refresh_from_db()
    return snapshot


def lock_patients(model_type, pseudonyms) -> LockedEvaluationSet:
    locked = LockedEvaluationSet.objects.create(model_type=model_type, cohort=model_type.cohort)
    LockedPatient.objects.bulk_create([LockedPatient(locked_set=locked, pseudonym=p) for p in pseudonyms])
    return locked


def test_no_case_of_a_locked_patient_reaches_a_snapshot_of_the_cohort_whatever_its_model_type():
    model_type = ModelTypeFactory.create(min_cases_to_train=8)
    other = ModelTypeFactory.create(cohort=model_type.cohort, min_cases_to_train=8)
    cases = approved_cohort(model_type.cohort, patients=16, cases_per_patient=2, diagnoses=DIAGNOSES[:2])
    pseudonyms = sorted({case.patient_pseudonym for case in Case.objects.filter(pk__in=[c.pk for c in cases])})
    locked = pseudonyms[:4]
    lock_patients(model_type, locked)
    locked_ids = set(Case.objects.filter(patient_pseudonym__in=locked).values_list("pk", flat=True))
    assert len(locked_ids) == 8

    for snapshot in (build(model_type), build(other)):
        assert snapshot.status == DatasetSnapshot.Status.READY
        assert not locked_ids & set(snapshot.case_ids())
        assert snapshot.case_count == 24
    assert preview_snapshot(create_snapshot(model_type, by=UserFactory.create())).case_count == 24


def test_a_locked_patients_later_case_stays_out_and_a_retired_set_lets_them_train_again():
    model_type = ModelTypeFactory.create(min_cases_to_train=8)
    approved_cohort(model_type.cohort, patients=12, diagnoses=DIAGNOSES[:2])
    first = Case.objects.filter(cohort=model_type.cohort).order_by("pk")[0]
    locked = lock_patients(model_type, [first.patient_pseudonym])
    # The same patient comes back after the lock: patient-disjoint means this case is out too.
    later = approved_cohort(model_type.cohort, patients=1, diagnoses=DIAGNOSES[:1])[0]
    Case.objects.filter(pk=later.pk).update(patient_pseudonym=first.patient_pseudonym)

    snapshot = build(model_type)
    assert first.pk not in snapshot.case_ids()
    assert later.pk not in snapshot.case_ids()

    locked.retire(reason="Renewed under the policy.")
    again = build(model_type)
    assert {first.pk, later.pk} <= set(again.case_ids())


def test_a_locked_set_of_another_cohort_excludes_nothing_here():
    model_type = ModelTypeFactory.create(min_cases_to_train=8)
    elsewhere = ModelTypeFactory.create(min_cases_to_train=8)
    cases = approved_cohort(model_type.cohort, patients=10, diagnoses=DIAGNOSES[:2])
    pseudonym = Case.objects.get(pk=cases[0].pk).patient_pseudonym
    lock_patients(elsewhere, [pseudonym])
    assert cases[0].pk in build(model_type).case_ids()
