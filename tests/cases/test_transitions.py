"""The review workflow of a case: every edge of the state machine, four eyes, races and the audit trail."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.conf import settings

from cases.deid import records, safe_harbor
from cases.interchange import CaseRecord, parse_record
from cases.models import Case, CaseTransition
from learning_engine.audit import AppendOnlyError
from learning_engine.exceptions import DomainError, FourEyesViolation, TransitionError
from tests.cases.factories import CaseFactory, record_dict
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

S = Case.Status


def make_case(state: str, *, submitter: Any) -> Case:
    traits = {} if state == S.SUBMITTED else {state: True}
    return CaseFactory.create(submitted_by=submitter, **traits)


def edited(case: Case, **changes: Any) -> CaseRecord:
    """The case's record with some top-level interchange keys replaced."""
    return parse_record({**case.to_record().to_json(), **changes})


def audit_rows(case: Case) -> list[tuple[str, str, int | None, str]]:
    return [
        (row.from_state, row.to_state, row.actor_id, row.reason)
        for row in CaseTransition.objects.filter(case=case).order_by("id")
    ]


def snapshot(case: Case) -> dict[str, Any]:
    """Everything a failed transition must leave as it was."""
    row = Case.objects.filter(pk=case.pk).values().get()
    return {**row, "audit": audit_rows(case)}


@pytest.fixture
def reviewer(second_clinician):
    return second_clinician


@pytest.fixture
def case(clinician) -> Case:
    return make_case(S.SUBMITTED, submitter=clinician)


# --- Every edge ----------------------------------------------------------------------------------

# (source state, action) -> the state it leads to; every other pair must raise TransitionError.
ALLOWED = {
    (S.SUBMITTED, "approve"): S.APPROVED,
    (S.SUBMITTED, "reject"): S.REJECTED,
    (S.SUBMITTED, "revise"): S.SUBMITTED,  # an edit of a case under review: no state change
    (S.REJECTED, "revise"): S.SUBMITTED,
    (S.APPROVED, "retract"): S.RETRACTED,
}
ACTIONS = ("approve", "reject", "retract", "revise")


def act(case: Case, action: str, *, by: Any) -> None:
    if action == "approve":
        case.approve(by=by, note="Consistent.")
    elif action == "reject":
        case.reject(by=by, reason=Case.RejectionReason.IMPLAUSIBLE, note="Check the SpO2.")
    elif action == "retract":
        case.retract(by=by, reason="Wrong patient.")
    else:
        case.revise(edited(case, note="Revised note: cough for three days."), by=by)


@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize("state", [S.SUBMITTED, S.APPROVED, S.REJECTED, S.RETRACTED])
def test_each_action_from_each_state_is_allowed_exactly_by_the_table(state, action, clinician, reviewer):
    case = make_case(state, submitter=clinician)
    before = snapshot(case)
    actor = clinician if action == "revise" else reviewer

    if (state, action) in ALLOWED:
        act(case, action, by=actor)
        case.refresh_from_db()
        assert case.status == ALLOWED[state, action]
    else:
        with pytest.raises(TransitionError) as caught:
            act(case, action, by=actor)
        assert caught.value.code == "invalid_transition"
        assert caught.value.status_code == 409
        assert caught.value.extra["current_status"] == state
        assert snapshot(case) == before, "a refused transition must change nothing, audit trail included"


def test_the_transition_table_matches_the_design():
    table, editable = Case.TRANSITIONS, Case.EDITABLE
    assert table == {
        S.APPROVED: {S.SUBMITTED},
        S.REJECTED: {S.SUBMITTED},
        S.SUBMITTED: {S.REJECTED},
        S.RETRACTED: {S.APPROVED},
    }
    assert editable == {S.SUBMITTED, S.REJECTED}


def test_approve_records_the_reviewer_and_the_note(case, reviewer):
    case.approve(by=reviewer, note="Findings support the label.")

    case.refresh_from_db()
    assert case.status == S.APPROVED
    assert case.reviewed_by == reviewer
    assert case.reviewed_at is not None
    assert case.review_note == "Findings support the label."
    assert case.rejection_reason == ""


def test_reject_records_the_reason_code_and_the_note(case, reviewer):
    case.reject(by=reviewer, reason=Case.RejectionReason.WRONG_LABEL, note="Chest X-ray is clear.")

    case.refresh_from_db()
    assert case.status == S.REJECTED
    assert case.reviewed_by == reviewer
    assert case.rejection_reason == "wrong_label"
    assert case.review_note == "Chest X-ray is clear."
    assert case.deidentified is None


def test_revise_sends_a_rejected_case_back_for_review(clinician):
    case = make_case(S.REJECTED, submitter=clinician)
    revision = case.revision

    assert case.revise(edited(case, note="Vitals added: Temp 38.9, HR 118."), by=clinician) == ("note",)

    case.refresh_from_db()
    assert case.status == S.SUBMITTED
    assert case.note == "Vitals added: Temp 38.9, HR 118."
    assert case.revision == revision + 1
    assert case.last_edited_by == clinician
    assert (case.reviewed_by, case.reviewed_at, case.rejection_reason) == (None, None, "")


def test_an_edit_of_a_submitted_case_by_another_clinician_writes_an_audit_row_naming_the_fields(case, reviewer):
    before = audit_rows(case)

    changed = case.revise(edited(case, symptoms=["cough", "fever", "dyspnea"], note="Worse at night."), by=reviewer)

    case.refresh_from_db()
    assert changed == ("symptoms", "note")
    assert case.status == S.SUBMITTED
    assert case.symptoms == ["cough", "fever", "dyspnea"]
    assert case.last_edited_by == reviewer
    assert audit_rows(case) == [*before, (S.SUBMITTED, S.SUBMITTED, reviewer.pk, "Edited.")]
    row = CaseTransition.objects.filter(case=case).last()
    assert row is not None
    assert row.changed_fields == ["symptoms", "note"]
    # Names only: no value of the record reaches the audit row.
    assert "dyspnea" not in str(row.changed_fields) + row.reason
    assert "Worse" not in str(row.changed_fields) + row.reason


def test_an_edit_of_the_patient_block_and_the_date_names_those_fields(case, clinician):
    record = case.to_record().to_json()
    record["patient"] = {**record["patient"], "phone": "+1 617 555 0199"}
    record["encounter_date"] = "2024-02-03"

    changed = case.revise(parse_record(record), by=clinician)

    assert changed == ("patient", "encounter_date")
    row = CaseTransition.objects.filter(case=case).last()
    assert row is not None
    assert row.changed_fields == ["patient", "encounter_date"]


def test_retract_keeps_the_deidentified_record_of_the_approval(clinician, reviewer):
    case = make_case(S.APPROVED, submitter=clinician)
    deidentified = case.deidentified

    case.retract(by=reviewer, reason="Consent withdrawn.")

    case.refresh_from_db()
    assert case.status == S.RETRACTED
    assert case.deidentified == deidentified


def test_a_transition_updates_the_modification_time(case, reviewer):
    before = Case.objects.get(pk=case.pk).updated_at

    case.approve(by=reviewer)

    assert Case.objects.get(pk=case.pk).updated_at > before


# --- Four eyes -----------------------------------------------------------------------------------


@pytest.mark.parametrize("action", ["approve", "reject"])
def test_the_submitter_may_not_review_their_own_case(case, clinician, action):
    before = snapshot(case)

    with pytest.raises(FourEyesViolation) as caught:
        act(case, action, by=clinician)

    assert caught.value.code == "four_eyes_violation"
    assert caught.value.status_code == 409
    assert snapshot(case) == before


@pytest.mark.parametrize("action", ["approve", "reject"])
def test_the_last_editor_may_not_review_the_case(case, reviewer, action):
    case.revise(edited(case, note="Edited by a colleague."), by=reviewer)
    before = snapshot(case)

    with pytest.raises(FourEyesViolation):
        act(case, action, by=reviewer)

    assert snapshot(case) == before
    third = UserFactory.create()
    act(case, action, by=third)  # a third clinician may
    assert Case.objects.get(pk=case.pk).reviewed_by == third


def test_a_review_needs_a_named_reviewer(case):
    with pytest.raises(FourEyesViolation) as caught:
        case.approve(by=None)
    assert caught.value.code == "reviewer_required"
    assert Case.objects.get(pk=case.pk).status == S.SUBMITTED


def test_can_review_is_false_for_the_authors_and_for_cases_not_under_review(case, clinician, reviewer):
    assert case.can_review(reviewer)
    assert not case.can_review(clinician)
    case.revise(edited(case, note="Edited."), by=reviewer)
    assert not case.can_review(reviewer)
    third = UserFactory.create()
    assert case.can_review(third)
    case.approve(by=third)
    assert not case.can_review(UserFactory.create())


def test_can_edit_only_while_submitted_or_rejected(clinician):
    editable = {state: make_case(state, submitter=clinician).can_edit() for state in S.values}
    assert editable == {S.SUBMITTED: True, S.REJECTED: True, S.APPROVED: False, S.RETRACTED: False}


# --- Stale copies and races ----------------------------------------------------------------------


@pytest.mark.parametrize("second", ["approve", "reject"])
def test_a_stale_copy_cannot_review_a_case_already_approved(case, reviewer, second):
    fresh, stale = Case.objects.get(pk=case.pk), Case.objects.get(pk=case.pk)
    fresh.approve(by=reviewer, note="First.")
    before = snapshot(case)

    with pytest.raises(TransitionError) as caught:
        act(stale, second, by=UserFactory.create())

    assert caught.value.extra["current_status"] == S.APPROVED
    after = snapshot(case)
    assert after == before
    assert (after["status"], after["reviewed_by_id"], after["review_note"]) == (S.APPROVED, reviewer.pk, "First.")


def test_a_stale_copy_cannot_approve_a_case_already_rejected(case, reviewer):
    fresh, stale = Case.objects.get(pk=case.pk), Case.objects.get(pk=case.pk)
    fresh.reject(by=reviewer, reason=Case.RejectionReason.DUPLICATE)

    with pytest.raises(TransitionError):
        stale.approve(by=UserFactory.create())

    case.refresh_from_db()
    assert case.status == S.REJECTED
    assert case.deidentified is None
    assert case.patient_pseudonym == ""


def test_a_stale_copy_cannot_retract_twice(clinician, reviewer):
    case = make_case(S.APPROVED, submitter=clinician)
    fresh, stale = Case.objects.get(pk=case.pk), Case.objects.get(pk=case.pk)
    fresh.retract(by=reviewer, reason="Duplicate record.")

    with pytest.raises(TransitionError):
        stale.retract(by=reviewer, reason="Again.")

    assert [row[:2] for row in audit_rows(case)].count((S.APPROVED, S.RETRACTED)) == 1


def test_a_stale_copy_cannot_edit_an_approved_case(case, clinician, reviewer):
    stale = Case.objects.get(pk=case.pk)
    case.approve(by=reviewer)
    before = snapshot(case)

    with pytest.raises(TransitionError):
        stale.revise(edited(stale, note="Too late."), by=clinician)

    assert snapshot(case) == before


def test_an_edit_after_the_reviewer_loaded_the_case_makes_the_approval_fail(case, clinician, reviewer):
    seen_by_reviewer = Case.objects.get(pk=case.pk)
    case.revise(edited(case, diagnosis={"code": "J20.9", "label": "Acute bronchitis"}), by=clinician)

    with pytest.raises(TransitionError):
        seen_by_reviewer.approve(by=reviewer)

    case.refresh_from_db()
    assert case.status == S.SUBMITTED
    assert case.deidentified is None
    # Reloaded, the reviewer approves what they now see.
    current = Case.objects.get(pk=case.pk)
    current.approve(by=reviewer)
    assert Case.objects.get(pk=case.pk).diagnosis_code == "J20.9"
    assert (current.deidentified or {})["diagnosis"]["code"] == "J20.9"


def test_of_two_concurrent_edits_the_second_is_refused(case, clinician, reviewer):
    first, second = Case.objects.get(pk=case.pk), Case.objects.get(pk=case.pk)
    first.revise(edited(first, note="First edit."), by=clinician)

    with pytest.raises(TransitionError):
        second.revise(edited(second, note="Second edit."), by=reviewer)

    assert Case.objects.get(pk=case.pk).note == "First edit."


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_of_many_simultaneous_approvals_exactly_one_wins():
    case = CaseFactory.create()
    reviewers = [UserFactory.create() for _ in range(6)]
    barrier = threading.Barrier(len(reviewers))
    outcomes: list[str] = []

    def review(user: Any) -> None:
        from django.db import connection as thread_connection

        try:
            copy = Case.objects.get(pk=case.pk)
            barrier.wait()
            copy.approve(by=user)
            outcomes.append("approved")
        except TransitionError:
            outcomes.append("refused")
        finally:
            thread_connection.close()

    threads = [threading.Thread(target=review, args=(user,)) for user in reviewers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(outcomes) == ["approved"] + ["refused"] * (len(reviewers) - 1)
    case.refresh_from_db()
    assert case.status == S.APPROVED
    assert CaseTransition.objects.filter(case=case, to_state=S.APPROVED).count() == 1


# --- Audit trail ---------------------------------------------------------------------------------


def test_submit_writes_the_first_audit_row(clinician):
    case = Case.submit(parse_record(record_dict()), by=clinician)
    assert audit_rows(case) == [("", S.SUBMITTED, clinician.pk, "")]


def test_each_transition_writes_one_audit_row_with_actor_states_and_reason(case, clinician, reviewer):
    case.reject(by=reviewer, reason=Case.RejectionReason.INCOMPLETE, note="No vitals.")
    case.revise(edited(case, note="Vitals: Temp 38.2."), by=clinician, reason="Added vitals.")
    approver = UserFactory.create()
    case.approve(by=approver, note="Fine now.")
    case.retract(by=approver, reason="Consent withdrawn.")

    assert audit_rows(case) == [
        ("", S.SUBMITTED, clinician.pk, ""),
        (S.SUBMITTED, S.REJECTED, reviewer.pk, "incomplete: No vitals."),
        (S.REJECTED, S.SUBMITTED, clinician.pk, "Added vitals."),
        (S.SUBMITTED, S.APPROVED, approver.pk, "Fine now."),
        (S.APPROVED, S.RETRACTED, approver.pk, "Consent withdrawn."),
    ]
    assert all(row.created_at is not None for row in CaseTransition.objects.filter(case=case))


def test_a_resubmission_without_a_reason_gets_a_default_one(clinician):
    case = make_case(S.REJECTED, submitter=clinician)
    case.revise(edited(case, note="Fixed."), by=clinician)
    assert audit_rows(case)[-1] == (S.REJECTED, S.SUBMITTED, clinician.pk, "Edited and resubmitted.")


def test_a_rejection_without_a_note_is_audited_with_the_reason_code(case, reviewer):
    case.reject(by=reviewer, reason=Case.RejectionReason.DUPLICATE)
    assert audit_rows(case)[-1] == (S.SUBMITTED, S.REJECTED, reviewer.pk, "duplicate")


def test_audit_rows_cannot_be_changed_or_deleted(case, reviewer):
    case.approve(by=reviewer, note="Original.")
    rows = CaseTransition.objects.filter(case=case)
    row = rows.latest("id")
    before = audit_rows(case)

    row.reason = "Rewritten."
    with pytest.raises(AppendOnlyError):
        row.save()
    with pytest.raises(AppendOnlyError):
        row.delete()
    with pytest.raises(AppendOnlyError):
        rows.update(reason="Rewritten.")
    with pytest.raises(AppendOnlyError):
        rows.delete()
    with pytest.raises(AppendOnlyError):
        CaseTransition.objects.bulk_update([row], ["reason"])

    assert audit_rows(case) == before


def test_a_case_with_an_audit_trail_cannot_be_deleted(case):
    from django.db.models import ProtectedError

    with pytest.raises(ProtectedError):
        case.delete()
    assert CaseTransition.objects.filter(case_id=case.pk).exists()


# --- What the transitions store ------------------------------------------------------------------


def test_approve_stores_the_deidentified_record_pseudonym_and_policy_version(case, reviewer):
    expected = records.deidentify(case.to_record(), key=settings.PSEUDONYM_KEY)

    case.approve(by=reviewer)

    case.refresh_from_db()
    assert case.deidentified == expected
    assert case.deid_policy_version == safe_harbor.POLICY_VERSION
    assert case.patient_pseudonym == safe_harbor.pseudonym(case.source, case.patient["mrn"], key=settings.PSEUDONYM_KEY)
    assert case.deidentified["patient_pseudonym"] == case.patient_pseudonym
    assert "patient" not in case.deidentified
    assert case.patient["name"].lower() not in str(case.deidentified).lower()


@pytest.mark.parametrize("reason", ["", "   ", None])
def test_retract_needs_a_reason(clinician, reviewer, reason):
    case = make_case(S.APPROVED, submitter=clinician)
    before = snapshot(case)

    with pytest.raises(DomainError) as caught:
        case.retract(by=reviewer, reason=reason)

    assert caught.value.code == "reason_required"
    assert snapshot(case) == before


@pytest.mark.parametrize("reason", ["", "not-a-reason", "INCOMPLETE", None])
def test_reject_needs_a_known_reason_code(case, reviewer, reason):
    before = snapshot(case)

    with pytest.raises(DomainError) as caught:
        case.reject(by=reviewer, reason=reason)

    assert caught.value.code == "invalid_reason"
    assert snapshot(case) == before


@pytest.mark.parametrize("reason", Case.RejectionReason.values)
def test_reject_takes_every_known_reason_code(case, reviewer, reason):
    case.reject(by=reviewer, reason=reason)
    assert Case.objects.get(pk=case.pk).rejection_reason == reason


def test_the_quality_score_is_recomputed_on_edit(clinician):
    case = CaseFactory.create(submitted_by=clinician, record=record_dict(note="", diagnosis=None))
    assert {issue["code"] for issue in case.quality_issues} == {"missing_note", "missing_label"}
    low = case.quality_score

    case.revise(
        edited(case, note="Cough and fever.", diagnosis={"code": "J18.9", "label": "Pneumonia"}),
        by=clinician,
    )

    case.refresh_from_db()
    assert case.quality_score == 1.0 > low
    assert case.quality_issues == []


def test_an_unchanged_revise_writes_nothing(case, clinician, django_assert_num_queries):
    before = snapshot(case)
    same = case.to_record()

    with django_assert_num_queries(0):
        assert case.revise(same, by=clinician) == ()

    assert snapshot(case) == before


def test_an_unchanged_revise_leaves_a_rejected_case_rejected(clinician):
    case = make_case(S.REJECTED, submitter=clinician)
    assert case.revise(case.to_record(), by=clinician) == ()
    assert Case.objects.get(pk=case.pk).status == S.REJECTED


def test_revise_cannot_move_a_case_to_another_source_or_external_id(case, clinician):
    before = snapshot(case)
    for changes in ({"external_id": "enc-other"}, {"source": "other-site"}):
        with pytest.raises(DomainError) as caught:
            case.revise(edited(case, **changes), by=clinician)
        assert caught.value.code == "immutable_field"
    assert snapshot(case) == before


def test_the_stored_record_hashes_like_the_submitted_one(case):
    reloaded = Case.objects.get(pk=case.pk)
    assert reloaded.to_record().content_hash() == reloaded.record_hash
