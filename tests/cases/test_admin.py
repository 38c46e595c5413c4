"""The case admin, through the HTTP client: review actions, PHI on pages, edits, statistics."""

from __future__ import annotations

import html as htmllib
import re
from html.parser import HTMLParser
from typing import Any

import pytest
from django.contrib.messages import get_messages
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from cases.models import Case, CaseTransition
from learning_engine import roles
from learning_engine.admin_helpers import CONFIRMED_VERSIONS_FIELD
from tests.cases.factories import CaseFactory, record_dict

CHANGELIST = reverse("admin:cases_case_changelist")
STATISTICS = reverse("admin:cases_case_statistics")


def change_url(case: Case) -> str:
    return reverse("admin:cases_case_change", args=[case.pk])


def message_texts(response) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


def action_post(client, action: str, cases: list[Case], **data: Any):
    return client.post(
        CHANGELIST, {"action": action, "index": "0", "_selected_action": [case.pk for case in cases], **data}
    )


def confirm_post(client, action: str, cases: list[Case], **data: Any):
    """The post the confirmation page makes, with the versions it showed."""
    versions = ",".join(f"{case.pk}:{case.revision}" for case in cases)
    payload = {
        "action": action,
        "post": "yes",
        "_selected_action": [case.pk for case in cases],
        CONFIRMED_VERSIONS_FIELD: versions,
        **data,
    }
    return client.post(CHANGELIST, payload, follow=True)


class FormInputs(HTMLParser):
    """The values a browser would submit for the admin change form (#case_form)."""

    def __init__(self) -> None:
        super().__init__()
        self.data: dict[str, Any] = {}
        self._in_form = False
        self._textarea: str | None = None
        self._select: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = dict(attrs)
        if tag == "form" and attr.get("id") == "case_form":
            self._in_form = True
        if not self._in_form:
            return
        name = attr.get("name")
        if "disabled" in attr:
            return  # a browser does not send a disabled input
        if tag == "input" and name and attr.get("type") == "checkbox":
            if "checked" in attr:
                self.data.setdefault(name, []).append(attr.get("value") or "on")
        elif tag == "input" and name and attr.get("type") != "submit":
            self.data[name] = attr.get("value") or ""
        elif tag == "textarea" and name:
            self._textarea = name
            self.data[name] = ""
        elif tag == "select" and name:
            self._select = name
            self.data.setdefault(name, "")
        elif tag == "option" and self._select and "selected" in attr:
            self.data[self._select] = attr.get("value") or ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._in_form = False
        elif tag == "textarea":
            self._textarea = None
        elif tag == "select":
            self._select = None

    def handle_data(self, data: str) -> None:
        if self._textarea:
            self.data[self._textarea] += data


def form_data(client, url: str) -> dict[str, Any]:
    parser = FormInputs()
    parser.feed(client.get(url).content.decode())
    data = {key: value.strip("\n") if isinstance(value, str) else value for key, value in parser.data.items()}
    data.pop("CHANGE_FORM-action", None)  # the change-form action picker is not part of a save
    data.pop("_selected_action", None)
    return data


def add_form_data(record: dict[str, Any]) -> dict[str, Any]:
    """What the generated add form of the record's cohort posts for an interchange record."""
    data: dict[str, Any] = {
        "source": record["source"],
        "external_id": record["external_id"],
        "encounter_date": record["encounter_date"],
        "symptoms": record["symptoms"],
        "note": record["note"],
        "diagnosis_code": record["diagnosis"]["code"],
    }
    data |= {f"patient_{key}": value for key, value in record["patient"].items()}
    data |= {f"finding_{key}": str(value) for key, value in record["findings"].items()}
    return data


def phi_values(case: Case) -> list[str]:
    patient = case.patient
    return [
        patient["name"],
        patient["mrn"],
        patient["email"],
        patient["ssn"],
        patient["phone"],
        patient["address"],
        patient["birth_date"],
        case.note,
        case.external_id,
        case.encounter_date.isoformat(),
    ]


# --- Review actions ------------------------------------------------------------------------------


def test_approve_selected_shows_a_confirmation_page_first_and_changes_nothing(staff):
    client, _reviewer = staff(roles.CLINICIAN)
    cases = [CaseFactory.create(), CaseFactory.create()]

    response = action_post(client, "approve_selected", cases)

    assert response.status_code == 200
    html = response.content.decode()
    assert "Approve cases" in html
    assert 'name="post" value="yes"' in html
    for case in cases:
        assert f'name="_selected_action" value="{case.pk}"' in html
    assert set(Case.objects.values_list("status", flat=True)) == {Case.Status.SUBMITTED}


def test_approve_selected_approves_after_confirmation_and_skips_the_rest_with_one_warning(staff):
    client, reviewer = staff(roles.CLINICIAN)
    reviewable = CaseFactory.create()
    own = CaseFactory.create(submitted_by=reviewer)
    already = CaseFactory.create(approved=True)

    response = confirm_post(client, "approve_selected", [reviewable, own, already], note="Checked the vitals.")

    assert response.status_code == 200
    reviewable.refresh_from_db()
    own.refresh_from_db()
    assert reviewable.status == Case.Status.APPROVED
    assert reviewable.reviewed_by == reviewer
    assert reviewable.review_note == "Checked the vitals."
    assert reviewable.deidentified is not None
    assert own.status == Case.Status.SUBMITTED  # four-eyes: the submitter cannot approve
    texts = message_texts(response)
    assert texts[0] == "Approved 1 case."
    assert texts[1].startswith("Skipped 2 cases:")
    assert "another clinician must review it" in texts[1]
    assert len(texts) == 2


def test_the_confirmation_page_warns_which_cases_will_be_skipped(staff):
    client, reviewer = staff(roles.CLINICIAN)
    own = CaseFactory.create(submitted_by=reviewer)
    approved = CaseFactory.create(approved=True)

    html = action_post(client, "approve_selected", [own, approved]).content.decode()

    assert "will be skipped, you submitted or last edited it" in html
    assert "will be skipped, it is approved" in html


def test_approval_skips_a_case_edited_after_the_confirmation_page(staff, second_clinician):
    client, _reviewer = staff(roles.CLINICIAN)
    case = CaseFactory.create()
    shown_revision = case.revision
    record = case.to_record().to_json() | {"note": "Updated note after the page was shown."}
    from cases.interchange import parse_record

    Case.objects.get(pk=case.pk).revise(parse_record(record), by=second_clinician)
    case.revision = shown_revision  # what the reviewer's confirmation page carried

    response = confirm_post(client, "approve_selected", [case])

    case.refresh_from_db()
    assert case.status == Case.Status.SUBMITTED
    assert "changed after the confirmation page was shown" in message_texts(response)[0]


def test_reject_selected_requires_a_reason_and_a_note(staff):
    client, _reviewer = staff(roles.CLINICIAN)
    case = CaseFactory.create()

    response = client.post(
        CHANGELIST,
        {"action": "reject_selected", "post": "yes", "_selected_action": [case.pk], "note": "Vitals missing."},
    )

    assert response.status_code == 200  # the confirmation page again, with the error
    assert "This field is required." in response.content.decode()
    case.refresh_from_db()
    assert case.status == Case.Status.SUBMITTED


def test_reject_selected_rejects_with_the_reason_and_note(staff):
    client, reviewer = staff(roles.CLINICIAN)
    case = CaseFactory.create()

    response = confirm_post(
        client, "reject_selected", [case], reason=Case.RejectionReason.IMPLAUSIBLE, note="SpO2 of 9 is a typo?"
    )

    case.refresh_from_db()
    assert case.status == Case.Status.REJECTED
    assert case.rejection_reason == Case.RejectionReason.IMPLAUSIBLE
    assert case.review_note == "SpO2 of 9 is a typo?"
    assert case.reviewed_by == reviewer
    assert message_texts(response) == ["Rejected 1 case."]


def test_reject_selected_refuses_an_unknown_reason(staff):
    client, _reviewer = staff(roles.CLINICIAN)
    case = CaseFactory.create()

    response = confirm_post(client, "reject_selected", [case], reason="because", note="x")

    assert "Select a valid choice." in response.content.decode()
    case.refresh_from_db()
    assert case.status == Case.Status.SUBMITTED


def test_retract_selected_retracts_approved_cases_with_a_reason(staff):
    client, reviewer = staff(roles.CLINICIAN)
    approved = CaseFactory.create(approved=True)
    submitted = CaseFactory.create()

    response = confirm_post(client, "retract_selected", [approved, submitted], reason="Wrong patient linked.")

    approved.refresh_from_db()
    submitted.refresh_from_db()
    assert approved.status == Case.Status.RETRACTED
    assert submitted.status == Case.Status.SUBMITTED
    last = approved.transitions.last()
    assert last is not None
    assert (last.actor, last.reason) == (reviewer, "Wrong patient linked.")
    texts = message_texts(response)
    assert texts[0] == "Retracted 1 case."
    assert texts[1].startswith("Skipped 1 case:")


@pytest.mark.parametrize("role", [roles.ML_ENGINEER, roles.CLINICAL_LEAD])
def test_a_user_without_review_permission_neither_sees_nor_can_run_the_actions(staff, role):
    client, _user = staff(role)
    case = CaseFactory.create()

    html = client.get(CHANGELIST).content.decode()
    assert "approve_selected" not in html
    assert "reject_selected" not in html
    assert "retract_selected" not in html

    response = confirm_post(client, "approve_selected", [case])

    case.refresh_from_db()
    assert case.status == Case.Status.SUBMITTED
    assert not any(text.startswith("Approved") for text in message_texts(response))


def test_a_reviewer_can_approve_from_the_case_page(staff):
    client, _reviewer = staff(roles.CLINICIAN)
    case = CaseFactory.create()
    url = change_url(case)

    page = client.post(url, {"CHANGE_FORM-action": "approve_selected", "_selected_action": [case.pk]})
    assert page.status_code == 200
    assert 'name="CHANGE_FORM-action" value="approve_selected"' in page.content.decode()
    case.refresh_from_db()
    assert case.status == Case.Status.SUBMITTED

    response = client.post(
        url,
        {
            "CHANGE_FORM-action": "approve_selected",
            "_selected_action": [case.pk],
            "post": "yes",
            CONFIRMED_VERSIONS_FIELD: f"{case.pk}:{case.revision}",
        },
        follow=True,
    )

    case.refresh_from_db()
    assert case.status == Case.Status.APPROVED
    assert message_texts(response) == ["Approved 1 case."]


# --- PHI on pages --------------------------------------------------------------------------------


def test_a_clinician_sees_the_raw_record_next_to_the_deidentified_one(staff):
    client, _user = staff(roles.CLINICIAN)
    case = CaseFactory.create(approved=True)

    html = htmllib.unescape(client.get(change_url(case)).content.decode())

    assert "Raw record (PHI)" in html
    assert case.patient["name"] in html
    assert case.patient["mrn"] in html
    assert case.patient_pseudonym in html
    assert case.deidentified is not None
    assert case.deidentified["note"] in html


def test_a_clinician_sees_a_deidentified_preview_of_a_submitted_case(staff):
    client, _user = staff(roles.CLINICIAN)
    case = CaseFactory.create()

    html = client.get(change_url(case)).content.decode()

    assert "De-identified preview" in html
    assert "[NAME] presented with cough and fever." in html


@pytest.mark.parametrize("role", [roles.ML_ENGINEER, roles.CLINICAL_LEAD])
def test_without_phi_permission_no_raw_value_appears_on_any_case_page(staff, role):
    client, _user = staff(role)
    approved = CaseFactory.create(approved=True)
    submitted = CaseFactory.create()
    rejected = CaseFactory.create(rejected=True)
    pages = [
        client.get(CHANGELIST),
        client.get(CHANGELIST, {"status__exact": "approved"}),
        client.get(change_url(approved)),
        # Not found without PHI access, as in the API (tests/cases/test_admin_visibility.py).
        client.get(change_url(submitted), follow=True),
        client.get(change_url(rejected), follow=True),
        client.get(reverse("admin:cases_case_history", args=[approved.pk])),
    ]

    for response in pages:
        assert response.status_code == 200
        html = htmllib.unescape(response.content.decode())  # "O'Brien" is O&#x27;Brien in the page
        for case in (approved, submitted, rejected):
            for value in phi_values(case):
                assert value not in html, f"{value!r} leaked to {response.wsgi_request.get_full_path()}"
        assert "Please add vitals." not in html  # a reviewer's free-text note is not scrubbed
    approved_page = pages[2].content.decode()
    assert approved.patient_pseudonym in approved_page
    assert approved.deidentified is not None
    assert approved.deidentified["note"] in approved_page  # "[NAME] presented with ..."
    assert "Raw record" not in approved_page
    assert pages[3].redirect_chain[-1][0] == reverse("admin:index")


def test_without_phi_permission_searching_phi_fields_finds_nothing(staff):
    client, _user = staff(roles.ML_ENGINEER)
    case = CaseFactory.create(approved=True)

    by_external_id = client.get(CHANGELIST, {"q": case.external_id})
    by_mrn = client.get(CHANGELIST, {"q": case.patient["mrn"]})
    by_pseudonym = client.get(CHANGELIST, {"q": case.patient_pseudonym})

    assert by_external_id.context["cl"].result_count == 0
    assert by_mrn.context["cl"].result_count == 0
    assert by_pseudonym.context["cl"].result_count == 1


@pytest.mark.parametrize(
    "lookup", ["note__icontains", "patient__name__icontains", "external_id", "encounter_date__year", "extra__has_key"]
)
def test_without_phi_permission_filtering_on_phi_fields_is_refused(staff, lookup):
    client, _user = staff(roles.ML_ENGINEER)
    CaseFactory.create()

    response = client.get(CHANGELIST, {lookup: "a"})

    assert response.status_code == 400


def test_without_phi_permission_the_offered_filters_still_work(staff):
    client, _user = staff(roles.ML_ENGINEER)
    approved = CaseFactory.create(approved=True)
    CaseFactory.create()

    by_status = client.get(CHANGELIST, {"status__exact": "approved"})
    by_quality = client.get(CHANGELIST, {"quality": "complete", "cohort": "respiratory"})

    assert [case.pk for case in by_status.context["cl"].result_list] == [approved.pk]
    assert by_quality.status_code == 200


def test_a_clinician_can_search_by_external_id_and_mrn(staff):
    client, _user = staff(roles.CLINICIAN)
    case = CaseFactory.create()
    CaseFactory.create()

    by_external_id = client.get(CHANGELIST, {"q": case.external_id})
    by_mrn = client.get(CHANGELIST, {"q": case.patient["mrn"]})

    assert [c.pk for c in by_external_id.context["cl"].result_list] == [case.pk]
    assert [c.pk for c in by_mrn.context["cl"].result_list] == [case.pk]


def test_the_quality_filter_selects_score_ranges(staff):
    client, _user = staff(roles.CLINICIAN)
    complete = CaseFactory.create()
    poor = CaseFactory.create(record=record_dict(findings={}, note="", diagnosis=None, patient={"mrn": "MRN-1"}))
    assert complete.quality_score == 1.0
    assert poor.quality_score < 0.5

    complete_ids = [c.pk for c in client.get(CHANGELIST, {"quality": "complete"}).context["cl"].result_list]
    poor_ids = [c.pk for c in client.get(CHANGELIST, {"quality": "poor"}).context["cl"].result_list]

    assert complete_ids == [complete.pk]
    assert poor_ids == [poor.pk]


def test_the_changelist_costs_the_same_number_of_queries_for_5_and_200_cases(staff):
    client, _user = staff(roles.CLINICIAN)

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            response = client.get(CHANGELIST)
        assert response.status_code == 200
        return len(captured.captured_queries)

    # Distinct submitters and reviewers per case: a missing select_related would show.
    for index in range(5):
        CaseFactory.create(approved=index % 2 == 0)
    few = queries()
    for index in range(195):
        CaseFactory.create(approved=index % 2 == 0)
    many = queries()

    assert Case.objects.count() == 200
    assert many == few


# --- Editing and creating ------------------------------------------------------------------------


def test_editing_a_rejected_case_goes_through_revise_and_resubmits_it(staff):
    client, editor = staff(roles.CLINICIAN)
    case = CaseFactory.create(rejected=True)
    data = form_data(client, change_url(case)) | {"finding_spo2": "95", "_save": "Save"}

    response = client.post(change_url(case), data, follow=True)

    assert response.status_code == 200
    case.refresh_from_db()
    assert case.status == Case.Status.SUBMITTED
    assert case.findings["spo2"] == 95
    assert case.revision == 2
    assert case.last_edited_by == editor
    assert case.reviewed_by is None
    last = CaseTransition.objects.filter(case=case).last()
    assert last is not None
    assert (last.from_state, last.to_state, last.actor) == ("rejected", "submitted", editor)


def test_an_edit_recomputes_the_quality_score(staff):
    client, _editor = staff(roles.CLINICIAN)
    case = CaseFactory.create()
    assert case.quality_score == 1.0
    data = form_data(client, change_url(case)) | {"note": "", "_save": "Save"}

    client.post(change_url(case), data)

    case.refresh_from_db()
    assert case.quality_score < 1.0
    assert any(issue["code"] == "missing_note" for issue in case.quality_issues)


def test_workflow_fields_cannot_be_set_through_the_form(staff):
    client, _editor = staff(roles.CLINICIAN)
    case = CaseFactory.create()
    data = form_data(client, change_url(case))
    assert "status" not in data
    assert "quality_score" not in data
    data |= {"status": "approved", "quality_score": "0.1", "deidentified": "{}", "_save": "Save"}

    client.post(change_url(case), data)

    case.refresh_from_db()
    assert case.status == Case.Status.SUBMITTED
    assert case.quality_score == 1.0
    assert case.deidentified is None


def test_an_edit_of_a_case_someone_changed_meanwhile_is_refused_and_kept_on_the_page(staff, second_clinician):
    client, _editor = staff(roles.CLINICIAN)
    case = CaseFactory.create()
    data = form_data(client, change_url(case)) | {"note": "My edit.", "_save": "Save"}
    other = case.to_record().to_json() | {"note": "Their edit."}
    from cases.interchange import parse_record

    Case.objects.get(pk=case.pk).revise(parse_record(other), by=second_clinician)

    response = client.post(change_url(case), data)

    assert response.status_code == 200
    assert "Someone changed this case after you opened it" in response.content.decode()
    assert "My edit." in response.content.decode()  # the user's text is still in the form
    case.refresh_from_db()
    assert case.note == "Their edit."


def test_an_approved_case_page_is_read_only_and_a_late_save_is_refused_with_a_message(staff):
    client, _editor = staff(roles.CLINICIAN)
    case = CaseFactory.create()
    data = form_data(client, change_url(case)) | {"note": "Too late.", "_save": "Save"}
    case.approve(by=CaseFactory.create().submitted_by)

    page = client.get(change_url(case)).content.decode()
    response = client.post(change_url(case), data, follow=True)

    assert 'name="_save"' not in page
    case.refresh_from_db()
    assert case.note != "Too late."
    assert case.status == Case.Status.APPROVED
    assert any("can no longer be edited" in text for text in message_texts(response))


def test_an_invalid_edit_shows_the_field_error_and_changes_nothing(staff):
    client, _editor = staff(roles.CLINICIAN)
    case = CaseFactory.create()
    data = form_data(client, change_url(case)) | {"patient_mrn": "", "_save": "Save"}

    response = client.post(change_url(case), data)

    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {"patient_mrn": ["This field is required."]}
    case.refresh_from_db()
    assert case.revision == 1


def test_adding_a_case_goes_through_submit(staff):
    client, submitter = staff(roles.CLINICIAN)
    record = record_dict()
    data = add_form_data(record) | {"_save": "Save"}
    add = reverse("admin:cases_case_add") + "?cohort=respiratory"

    response = client.post(add, data)

    assert response.status_code == 302
    case = Case.objects.get(external_id=record["external_id"])
    assert case.status == Case.Status.SUBMITTED
    assert case.submitted_by == submitter
    assert case.quality_score == 1.0
    assert case.record_hash
    assert list(case.transitions.values_list("to_state", "actor")) == [("submitted", submitter.pk)]

    again = client.post(add, data)
    assert again.status_code == 200
    assert "already exists" in again.content.decode()
    assert Case.objects.filter(external_id=record["external_id"]).count() == 1


@pytest.mark.parametrize("role", [roles.ML_ENGINEER, roles.CLINICAL_LEAD])
def test_without_phi_permission_cases_cannot_be_added_or_edited(staff, role):
    client, _user = staff(role)
    case = CaseFactory.create()
    approved = CaseFactory.create(approved=True)

    assert client.get(reverse("admin:cases_case_add")).status_code == 403
    # A submitted case does not exist for them (the admin's redirect, as the API's 404) ...
    assert client.post(change_url(case), {"note": "x", "_save": "Save"}).status_code == 302
    # ... and one they can see is read-only.
    assert client.post(change_url(approved), {"note": "x", "_save": "Save"}).status_code == 403
    case.refresh_from_db()
    assert case.revision == 1


def test_cases_cannot_be_deleted_in_the_admin(admin_client):
    case = CaseFactory.create()

    assert admin_client.get(reverse("admin:cases_case_delete", args=[case.pk])).status_code == 403
    assert "delete_selected" not in admin_client.get(CHANGELIST).content.decode()
    assert Case.objects.filter(pk=case.pk).exists()


def test_the_audit_trail_is_shown_inline_read_only(staff):
    client, _user = staff(roles.CLINICIAN)
    case = CaseFactory.create(rejected=True)

    html = client.get(change_url(case)).content.decode()

    assert "audit trail" in html.lower()
    assert "Please add vitals." in html  # the rejection's reason, shown to PHI users
    assert "transitions-0-DELETE" not in html
    assert "Add another audit entry" not in html


# --- Statistics ----------------------------------------------------------------------------------


def test_the_statistics_page_draws_an_svg_chart_without_any_cdn(staff):
    client, _user = staff(roles.ML_ENGINEER)
    CaseFactory.create(approved=True)
    CaseFactory.create(rejected=True)
    CaseFactory.create()

    response = client.get(STATISTICS)

    assert response.status_code == 200
    html = response.content.decode()
    assert "<svg" in html
    assert "<rect" in html
    assert "Quality score histogram" in html
    assert "Diagnosis not supported" in html or "Incomplete record" in html
    assert "cdn" not in html.lower()
    assert '<script src="http' not in html
    stats = response.context["stats"]
    assert stats["total"] == 3
    assert stats["deidentified"] == 1


@pytest.mark.parametrize("role", [roles.PREDICTION_CLIENT, None])
def test_the_statistics_page_is_refused_without_the_permission(staff, role):
    client, _user = staff(role)

    assert client.get(STATISTICS).status_code == 403


def test_the_statistics_page_sends_anonymous_and_non_staff_users_to_the_login(client, clinician):
    assert client.get(STATISTICS).status_code == 302
    client.force_login(clinician)  # a clinician, but not staff
    response = client.get(STATISTICS)
    assert response.status_code == 302
    assert reverse("admin:login") in response["Location"]


def test_the_admin_index_and_the_changelist_link_to_the_statistics(staff):
    client, _user = staff(roles.CLINICIAN)

    assert STATISTICS in client.get(reverse("admin:index")).content.decode()
    assert STATISTICS in client.get(CHANGELIST).content.decode()


def test_users_without_the_statistics_permission_see_no_link(staff):
    client, _user = staff(roles.PREDICTION_CLIENT)

    assert STATISTICS not in client.get(reverse("admin:index")).content.decode()


@pytest.mark.parametrize(("role", "shows_external_id"), [(roles.CLINICIAN, True), (roles.ML_ENGINEER, False)])
def test_the_changelist_columns_depend_on_the_phi_permission(staff, role, shows_external_id):
    client, _user = staff(role)
    CaseFactory.create()

    columns = client.get(CHANGELIST).context["cl"].list_display

    assert ("external_id" in columns) is shows_external_id
    assert {"status", "source_cohort", "diagnosis", "quality", "people", "created"} <= set(columns)
    assert not {"patient", "note", "extra", "encounter_date"} & set(columns)


def test_the_changelist_does_not_read_the_raw_record_from_the_database(staff):
    client, _user = staff(roles.CLINICIAN)
    CaseFactory.create()

    with CaptureQueriesContext(connection) as captured:
        client.get(CHANGELIST)

    list_queries = [q["sql"] for q in captured.captured_queries if 'FROM "cases_case" INNER JOIN' in q["sql"]]
    assert list_queries
    for sql in list_queries:
        assert '"cases_case"."patient"' not in sql
        assert '"cases_case"."note"' not in sql
        assert '"cases_case"."residual_keys"' not in sql


def _change_form_actions(html: str) -> set[str]:
    picker = re.search(r'<select name="CHANGE_FORM-action".*?</select>', html, re.S)
    return set(re.findall(r'<option value="(\w+)"', picker.group(0))) if picker else set()


def test_an_approved_case_page_offers_retract_but_not_approve_or_reject(staff):
    client, reviewer = staff(roles.CLINICIAN)
    case = CaseFactory.create()
    case.approve(by=reviewer)
    html = client.get(change_url(case)).content.decode()
    assert _change_form_actions(html) == {"retract_selected"}
    assert "Approve this case: not offered, it is approved." in html


def test_the_submitter_is_not_offered_approve_on_their_own_case_and_is_told_why(staff):
    client, submitter = staff(roles.CLINICIAN)
    case = CaseFactory.create(submitted_by=submitter)
    html = client.get(change_url(case)).content.decode()
    assert "approve_selected" not in _change_form_actions(html)
    assert (
        "Approve this case: not offered, you submitted or last edited it; another clinician must review it "
        "(four-eyes rule)." in html
    )
