"""Stored de-identified records of an older policy are made again under the current one."""

from __future__ import annotations

import io

import pytest
from django.conf import settings
from django.core.management import call_command

from cases import redeid
from cases.deid import records, residual, safe_harbor
from cases.models import Case
from tests.cases.factories import CaseFactory, record_dict

pytestmark = pytest.mark.django_db
OLD = "safe-harbor-1999.1"


def aged(case: Case, note: str) -> None:
    """Make ``case`` look approved under an older policy whose record let ``note`` through."""
    assert case.deidentified is not None
    record = {**case.deidentified, "policy_version": OLD, "note": note}
    Case.objects.filter(pk=case.pk).update(
        deidentified=record, deid_policy_version=OLD, deid_sha256="old", residual_keys="rk1 n:x"
    )


def test_an_older_record_is_made_again_from_the_raw_record():
    record = record_dict(note="Daughter Maria called on May 24th.")
    # A patient whose identifiers share no word with the note (a Faker patient named May, or living
    # on May Street, rightly has "May" scrubbed as a name: the test then failed at random).
    record["patient"] |= {"name": "Ann Smith", "email": "ann@example.org", "address": "12 Elm St, Cambridge, MA"}
    case = CaseFactory.create(record=record, approved=True)
    aged(case, "Daughter Maria called on May 24th.")

    assert redeid.redeidentify_stale() == 1

    case.refresh_from_db()
    assert case.deid_policy_version == safe_harbor.POLICY_VERSION
    assert case.deidentified is not None
    assert case.deidentified["note"] == "Daughter [NAME] called on [DATE]."
    assert case.deidentified == records.deidentify(case.to_record(), key=settings.PSEUDONYM_KEY)
    assert case.deid_sha256 == records.record_sha256(case.deidentified)
    assert case.residual_keys == residual.residual_keys(case.patient)
    assert case.status == Case.Status.APPROVED


def test_current_submitted_and_rejected_cases_are_left_alone():
    current = CaseFactory.create(approved=True)
    submitted = CaseFactory.create()
    before = Case.objects.get(pk=current.pk).deid_sha256

    assert redeid.redeidentify_stale() == 0

    assert Case.objects.get(pk=current.pk).deid_sha256 == before
    assert Case.objects.get(pk=submitted.pk).deidentified is None


def test_a_case_changed_after_it_was_read_is_not_overwritten(monkeypatch):
    case = CaseFactory.create(approved=True)
    aged(case, "old")
    real_deidentify = records.deidentify

    def retracted_meanwhile(record, *, key):
        Case.objects.filter(pk=case.pk).update(revision=case.revision + 1)
        return real_deidentify(record, key=key)

    monkeypatch.setattr(redeid, "deidentify", retracted_meanwhile)  # where redeid looks it up

    assert redeid.redeidentify([case.pk]) == 0
    assert Case.objects.get(pk=case.pk).deid_policy_version == OLD


def test_the_command_counts_with_dry_run_then_updates():
    cases = [CaseFactory.create(approved=True) for _ in range(3)]
    for case in cases[:2]:
        aged(case, "old")

    out = io.StringIO()
    call_command("redeidentify_cases", "--dry-run", stdout=out)
    assert "2 of 2 case(s) of an older policy would be de-identified again" in out.getvalue()
    assert Case.objects.filter(deid_policy_version=OLD).count() == 2

    out = io.StringIO()
    call_command("redeidentify_cases", stdout=out)
    assert f"2 of 2 case(s) of an older policy de-identified again under {safe_harbor.POLICY_VERSION}" in out.getvalue()
    assert not Case.objects.filter(deid_policy_version=OLD).exists()
