"""The case API through HTTP with real JWT clients: submit, list, edit, review, import, statistics."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from cases.models import Case, CaseTransition
from tests.cases.factories import CaseFactory, record_dict
from tests.conftest import jwt_client

URL = "/api/v1/cases/"
IMPORT_URL = f"{URL}import/"
STATISTICS_URL = f"{URL}statistics/"

pytestmark = pytest.mark.django_db


def detail(case: Case, action: str = "") -> str:
    return f"{URL}{case.pk}/{action + '/' if action else ''}"


def jsonl(*records: Any) -> str:
    return "\n".join(record if isinstance(record, str) else json.dumps(record) for record in records) + "\n"


@pytest.fixture
def client(clinician):
    return jwt_client(clinician)


@pytest.fixture
def reviewer_client(second_clinician):
    return jwt_client(second_clinician)


# --- Create ---------------------------------------------------------------------------------------


def test_create_submits_the_case_and_answers_with_the_full_record(client, clinician):
    record = record_dict(unknown_key="kept")
    response = client.post(URL, record, format="json")

    assert response.status_code == 201, response.json()
    body = response.json()
    case = Case.objects.get(pk=body["id"])
    assert body["status"] == case.status == Case.Status.SUBMITTED
    assert body["patient"]["mrn"] == record["patient"]["mrn"]
    assert body["external_id"] == record["external_id"]
    assert body["diagnosis"] == {"code": "J18.9", "label": record["diagnosis"]["label"]}
    assert body["extra"] == {"unknown_key": "kept"}
    assert body["submitted_by"] == clinician.username
    assert body["quality_score"] == case.quality_score > 0
    assert body["deidentified"] is None
    assert CaseTransition.objects.filter(case=case, to_state="submitted", actor=clinician).count() == 1


def test_create_refuses_a_record_without_an_mrn_and_names_the_field(client):
    record = record_dict()
    del record["patient"]["mrn"]

    response = client.post(URL, record, format="json")

    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid"
    assert list(body["errors"]) == ["patient.mrn"]
    assert not Case.objects.exists()


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"findings": {"heart_rate": "fast"}}, "findings[0]"),
        ({"findings": {"heart_rate": True}}, "findings[0]"),
        ({"symptoms": "cough"}, "symptoms"),
        ({"encounter_date": 20260101}, "encounter_date"),
        ({"encounter_date": "2026-02-30"}, "encounter_date"),
        ({"patient": "Jane Doe"}, "patient"),
        ({"cohort": "has spaces"}, "cohort"),
        ({"source": None}, "source"),
        ({"diagnosis": ["J18.9"]}, "diagnosis"),
    ],
)
def test_create_refuses_wrong_types_with_400_naming_the_field(client, overrides, field):
    response = client.post(URL, record_dict(**overrides), format="json")

    assert response.status_code == 400
    assert response.json()["code"] == "invalid"
    assert field in response.json()["errors"]
    assert not Case.objects.exists()


@pytest.mark.parametrize("body", [[], "a string", 42])
def test_create_refuses_a_body_that_is_not_an_object(client, body):
    response = client.post(URL, json.dumps(body), content_type="application/json")

    assert response.status_code == 400
    assert response.json()["code"] == "invalid"
    assert response.json()["errors"] == {"non_field_errors": ["A case must be a JSON object."]}


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        ("{not json", "application/json"),
        (b'{"note": "\xff\xfe"}', "application/json"),
        ("[" * 5000 + "]" * 5000, "application/json"),
        ('{"note": "x"}', "application/json; charset=bz2_codec"),
    ],
    ids=["not-json", "not-utf8", "too-deep", "bad-charset"],
)
def test_create_refuses_a_body_that_cannot_be_parsed_with_400(client, data, content_type):
    response = client.post(URL, data, content_type=content_type)

    assert response.status_code == 400
    assert response.json()["code"] == "parse_error"


def test_create_refuses_a_form_body_with_415(client):
    response = client.post(URL, {"cohort": "x"}, format="multipart")

    assert response.status_code == 415
    assert response.json()["code"] == "unsupported_media_type"


def test_create_with_an_existing_source_and_external_id_is_a_409_not_a_duplicate(client):
    existing = CaseFactory.create()
    record = record_dict(source=existing.source, external_id=existing.external_id)

    response = client.post(URL, record, format="json")

    assert response.status_code == 409
    assert response.json()["code"] == "duplicate_case"
    assert response.json()["case_id"] == existing.pk
    assert Case.objects.count() == 1


# --- List, filters, detail ------------------------------------------------------------------------


def test_list_is_paginated_newest_first(client):
    first, second = CaseFactory.create(), CaseFactory.create()

    body = client.get(URL).json()

    assert body["count"] == 2
    assert [item["id"] for item in body["results"]] == [second.pk, first.pk]


def test_list_filters_by_status_cohort_diagnosis_and_minimum_quality(client):
    approved = CaseFactory.create(approved=True, record=record_dict(cohort="breast-mass"))
    CaseFactory.create(rejected=True, record=record_dict(cohort="breast-mass"))
    low = CaseFactory.create(record=record_dict(note="", diagnosis={"code": "C50.9", "label": "Malignant"}))

    def ids(query: str) -> set[int]:
        response = client.get(f"{URL}?{query}")
        assert response.status_code == 200, response.json()
        return {item["id"] for item in response.json()["results"]}

    assert ids("status=approved") == {approved.pk}
    assert ids("status=approved&status=submitted") == {approved.pk, low.pk}
    assert ids("cohort=breast-mass&status=approved") == {approved.pk}
    assert ids("diagnosis_code=c50.9") == {low.pk}
    assert low.quality_score < 1.0
    assert ids(f"min_quality={low.quality_score + 0.0001}") == set(
        Case.objects.exclude(pk=low.pk).values_list("pk", flat=True)
    )


def test_list_filters_by_encounter_and_creation_dates(client):
    today = dt.date.today()
    old = CaseFactory.create(record=record_dict(encounter_date="2020-03-01"))
    new = CaseFactory.create(record=record_dict(encounter_date=(today - dt.timedelta(days=2)).isoformat()))

    def ids(query: str) -> set[int]:
        response = client.get(f"{URL}?{query}")
        assert response.status_code == 200, response.json()
        return {item["id"] for item in response.json()["results"]}

    assert ids("encounter_before=2020-03-01") == {old.pk}
    assert ids("encounter_after=2020-03-02") == {new.pk}
    assert ids("encounter_year=2020") == {old.pk}
    assert ids(f"created_after={today.isoformat()}") == {old.pk, new.pk}
    assert ids(f"created_before={(today - dt.timedelta(days=1)).isoformat()}") == set()


def test_list_searches_external_ids_and_orders_by_quality(client):
    good = CaseFactory.create(record=record_dict(external_id="enc-search-1"))
    poor = CaseFactory.create(record=record_dict(external_id="enc-other-2", note="", findings={}))

    found = client.get(f"{URL}?search=search-1").json()["results"]
    ordered = client.get(f"{URL}?ordering=quality_score").json()["results"]

    assert [item["id"] for item in found] == [good.pk]
    assert [item["id"] for item in ordered] == [poor.pk, good.pk]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("status=bogus", "status"),
        ("min_quality=abc", "min_quality"),
        ("min_quality=1.5", "min_quality"),
        ("min_quality=NaN", "min_quality"),
        ("encounter_after=yesterday", "encounter_after"),
        ("encounter_after=2026-05-02&encounter_before=2026-05-01", "encounter_before"),
        ("encounter_year=twenty", "encounter_year"),
        ("created_before=2026-13-01", "created_before"),
        ("cohort=%00", "cohort"),
        ("ordering=patient", "ordering"),
        ("ordering=-note", "ordering"),
    ],
)
def test_bad_filter_values_are_400_with_a_code(client, query, field):
    CaseFactory.create()

    response = client.get(f"{URL}?{query}")

    assert response.status_code == 400
    assert response.json()["code"] == "invalid"
    assert field in response.json()["errors"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("search=enc-1", "search"),
        ("encounter_after=2020-01-01", "encounter_after"),
        ("encounter_before=2020-01-01", "encounter_before"),
        ("ordering=external_id", "ordering"),
        ("ordering=-encounter_date", "ordering"),
    ],
)
def test_identifier_filters_are_refused_without_the_phi_permission(engineer, query, field):
    CaseFactory.create(approved=True)

    response = jwt_client(engineer).get(f"{URL}?{query}")

    assert response.status_code == 400
    assert response.json()["code"] == "invalid"
    assert field in response.json()["errors"]


def test_retrieve_gives_a_clinician_the_raw_record(client):
    case = CaseFactory.create(approved=True)

    body = client.get(detail(case)).json()

    assert body["patient"] == case.patient
    assert body["note"] == case.note
    assert body["deidentified"]["patient_pseudonym"] == case.patient_pseudonym


def test_retrieve_gives_an_ml_engineer_only_the_deidentified_record(engineer):
    case = CaseFactory.create(approved=True)

    body = jwt_client(engineer).get(detail(case)).json()

    assert set(body) >= {"id", "status", "encounter_year", "diagnosis", "quality_score", "deidentified"}
    assert not set(body) & {"patient", "note", "extra", "external_id", "findings", "symptoms", "encounter_date"}
    assert body["encounter_year"] == case.encounter_date.year
    assert body["deidentified"]["findings"] == case.findings
    assert body["patient_pseudonym"] == case.patient_pseudonym


@pytest.mark.parametrize("path", ["list", "detail"])
def test_an_ml_engineer_request_never_loads_the_raw_record_or_the_folded_identifiers(engineer, path):
    case = CaseFactory.create(approved=True)
    assert case.residual_keys  # approval stored them

    with CaptureQueriesContext(connection) as captured:
        response = jwt_client(engineer).get(URL if path == "list" else detail(case))

    assert response.status_code == 200
    case_queries = [q["sql"] for q in captured.captured_queries if 'FROM "cases_case"' in q["sql"]]
    assert case_queries
    for sql in case_queries:
        for column in ("patient", "note", "residual_keys", "external_id"):
            assert f'"cases_case"."{column}"' not in sql


@pytest.mark.parametrize("state", ["submitted", "rejected"])
def test_cases_without_a_deidentified_record_are_invisible_to_an_ml_engineer(engineer, state):
    case = CaseFactory.create(state=state)
    client = jwt_client(engineer)

    assert client.get(detail(case)).status_code == 404
    assert client.get(URL).json()["count"] == 0


@pytest.mark.parametrize("path", ["999999/", "abc/", "1.5/"])
def test_unknown_case_ids_are_404_with_a_code(client, path):
    response = client.get(f"{URL}{path}")

    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


# --- Edit -----------------------------------------------------------------------------------------


def test_put_replaces_the_record_and_rescores_it(client, clinician):
    case = CaseFactory.create(submitted_by=clinician)
    record = case.to_record().to_json()
    record.pop("source")
    record.pop("external_id")
    record["note"] = ""

    response = client.put(detail(case), record, format="json")

    assert response.status_code == 200, response.json()
    case.refresh_from_db()
    assert case.note == ""
    assert case.revision == 2
    assert "missing_note" in {issue["code"] for issue in case.quality_issues}
    assert response.json()["quality_score"] == case.quality_score


def test_patch_merges_into_the_current_record(client, clinician, second_clinician):
    case = CaseFactory.create(submitted_by=second_clinician)
    mrn = case.patient["mrn"]

    response = client.patch(detail(case), {"findings": {"spo2": 88}, "patient": {"phone": None}}, format="json")

    assert response.status_code == 200, response.json()
    case.refresh_from_db()
    assert case.findings["spo2"] == 88
    assert case.findings["heart_rate"] == 104  # untouched keys stay
    assert case.patient["mrn"] == mrn
    assert "phone" not in case.patient
    assert response.json()["last_edited_by"] == clinician.username


def test_editing_a_rejected_case_resubmits_it(client):
    case = CaseFactory.create(rejected=True)

    response = client.patch(detail(case), {"findings": {"wbc": 9.1}}, format="json")

    assert response.status_code == 200
    assert response.json()["status"] == "submitted"
    assert response.json()["reviewed_by"] is None
    case.refresh_from_db()
    assert case.status == Case.Status.SUBMITTED
    assert case.transitions.filter(from_state="rejected", to_state="submitted").exists()


@pytest.mark.parametrize("state", ["approved", "retracted"])
def test_editing_a_reviewed_case_is_a_409(client, state):
    case = CaseFactory.create(state=state)

    response = client.patch(detail(case), {"note": "changed"}, format="json")

    assert response.status_code == 409
    assert response.json()["code"] == "invalid_transition"
    assert response.json()["current_status"] == state
    case.refresh_from_db()
    assert case.note != "changed"


def test_an_edit_cannot_change_the_external_id(client):
    case = CaseFactory.create()

    response = client.patch(detail(case), {"external_id": "enc-new"}, format="json")

    assert response.status_code == 409
    assert response.json()["code"] == "immutable_field"


def test_an_invalid_edit_is_a_400_and_changes_nothing(client):
    case = CaseFactory.create()

    response = client.patch(detail(case), {"patient": {"mrn": None}}, format="json")

    assert response.status_code == 400
    assert "patient.mrn" in response.json()["errors"]
    case.refresh_from_db()
    assert case.revision == 1


# --- Review ---------------------------------------------------------------------------------------


def test_approve_stores_the_deidentified_record(reviewer_client, second_clinician):
    case = CaseFactory.create()

    response = reviewer_client.post(detail(case, "approve"), {"note": "Agreed."}, format="json")

    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["status"] == "approved"
    assert body["reviewed_by"] == second_clinician.username
    assert body["review_note"] == "Agreed."
    assert body["deidentified"]["patient_pseudonym"] == body["patient_pseudonym"]
    assert case.transitions.filter(to_state="approved", actor=second_clinician).exists()


def test_approve_rejects_the_submitter_as_reviewer(client, clinician):
    case = CaseFactory.create(submitted_by=clinician)

    response = client.post(detail(case, "approve"), {}, format="json")

    assert response.status_code == 409
    assert response.json()["code"] == "four_eyes_violation"
    case.refresh_from_db()
    assert case.status == Case.Status.SUBMITTED


def test_approve_rejects_the_last_editor_as_reviewer(client):
    case = CaseFactory.create()
    assert client.patch(detail(case), {"note": "Edited."}, format="json").status_code == 200

    response = client.post(detail(case, "approve"), {}, format="json")

    assert response.status_code == 409
    assert response.json()["code"] == "four_eyes_violation"


@pytest.mark.parametrize(
    ("state", "action", "body"),
    [
        ("approved", "approve", {}),
        ("rejected", "approve", {}),
        ("approved", "reject", {"reason": "incomplete"}),
        ("submitted", "retract", {"reason": "Wrong patient."}),
        ("retracted", "retract", {"reason": "Again."}),
    ],
)
def test_transitions_from_the_wrong_state_are_409_with_the_current_status(client, state, action, body):
    case = CaseFactory.create(state=state)

    response = client.post(detail(case, action), body, format="json")

    assert response.status_code == 409
    assert response.json()["code"] == "invalid_transition"
    assert response.json()["current_status"] == state
    assert response.json()["detail"]


def test_reject_records_the_reason_and_note(reviewer_client):
    case = CaseFactory.create()

    response = reviewer_client.post(detail(case, "reject"), {"reason": "implausible", "note": "Check SpO2."})

    assert response.status_code == 200, response.json()
    assert response.json()["status"] == "rejected"
    assert response.json()["rejection_reason"] == "implausible"
    assert response.json()["review_note"] == "Check SpO2."


@pytest.mark.parametrize("body", [{}, {"reason": "bogus"}, {"reason": None}])
def test_reject_needs_a_known_reason(reviewer_client, body):
    case = CaseFactory.create()

    response = reviewer_client.post(detail(case, "reject"), body, format="json")

    assert response.status_code == 400
    assert "reason" in response.json()["errors"]
    case.refresh_from_db()
    assert case.status == Case.Status.SUBMITTED


def test_retract_needs_a_reason_and_retracts_an_approved_case(client):
    case = CaseFactory.create(approved=True)

    refused = client.post(detail(case, "retract"), {}, format="json")
    blank = client.post(detail(case, "retract"), {"reason": "  "}, format="json")
    response = client.post(detail(case, "retract"), {"reason": "Wrong patient."}, format="json")

    assert refused.status_code == blank.status_code == 400
    assert response.status_code == 200
    assert response.json()["status"] == "retracted"
    assert case.transitions.filter(to_state="retracted", reason="Wrong patient.").exists()


def test_there_is_no_delete(client):
    case = CaseFactory.create()

    response = client.delete(detail(case))

    assert response.status_code in {403, 405}
    assert Case.objects.filter(pk=case.pk).exists()


# --- Import ---------------------------------------------------------------------------------------


def test_import_of_a_json_array_creates_the_cases(client, clinician):
    records = [record_dict() for _ in range(3)]

    response = client.post(IMPORT_URL, records, format="json")

    assert response.status_code == 200, response.json()
    assert response.json() == {
        "read": 3,
        "created": 3,
        "updated": 0,
        "unchanged": 0,
        "failed": 0,
        "errors": [],
        "errors_truncated": False,
    }
    assert set(Case.objects.values_list("submitted_by", flat=True)) == {clinician.pk}


def test_reimport_is_idempotent(client):
    records = [record_dict() for _ in range(3)]
    body = jsonl(*records)
    assert client.post(IMPORT_URL, body, content_type="application/x-ndjson").status_code == 200

    again = client.post(IMPORT_URL, body, content_type="application/x-ndjson")
    records[0]["note"] = "Changed on the second import."
    changed = client.post(IMPORT_URL, records, format="json")

    assert again.status_code == 200
    assert again.json()["unchanged"] == 3
    assert again.json()["created"] == 0
    assert changed.json()["updated"] == 1
    assert Case.objects.count() == 3


def test_a_partial_import_reports_bad_lines_by_number_and_keeps_the_good_ones(client):
    no_mrn = record_dict()
    del no_mrn["patient"]["mrn"]
    body = jsonl(record_dict(), "{not json", "", no_mrn, record_dict())

    response = client.post(IMPORT_URL, body, content_type="application/jsonl")

    assert response.status_code == 200
    report = response.json()
    assert (report["read"], report["created"], report["failed"]) == (4, 2, 2)
    assert [(error["line"], error["field"]) for error in report["errors"]] == [(2, ""), (4, "patient.mrn")]
    assert Case.objects.count() == 2


def test_import_takes_the_source_from_the_query_for_records_without_one(client):
    record = record_dict()
    del record["source"]

    response = client.post(f"{IMPORT_URL}?source=general-hospital", jsonl(record), content_type="text/plain")

    assert response.status_code == 200, response.json()
    assert Case.objects.get().source == "general-hospital"


def test_import_refuses_a_bad_source_parameter(client):
    response = client.post(f"{IMPORT_URL}?source=two%20words", [record_dict()], format="json")

    assert response.status_code == 400
    assert "source" in response.json()["errors"]


def test_an_import_where_every_record_fails_is_a_400_with_the_report(client):
    response = client.post(IMPORT_URL, [{"cohort": "x"}, "not an object"], format="json")

    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid_records"
    assert body["report"]["failed"] == 2
    assert [error["line"] for error in body["report"]["errors"]] == [1, 2]


def test_an_import_of_too_many_records_is_refused_before_anything_is_written(client, settings):
    settings.MAX_IMPORT_RECORDS = 2

    as_array = client.post(IMPORT_URL, [record_dict() for _ in range(3)], format="json")
    as_lines = client.post(IMPORT_URL, jsonl(*(record_dict() for _ in range(3))), content_type="application/x-ndjson")

    for response in (as_array, as_lines):
        assert response.status_code == 400
        assert response.json()["code"] == "too_many_records"
    assert not Case.objects.exists()


def test_an_import_body_over_the_import_limit_is_a_413(client, settings):
    settings.MAX_IMPORT_BODY_BYTES = 500

    response = client.post(IMPORT_URL, jsonl(record_dict(), record_dict()), content_type="application/x-ndjson")

    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"
    assert not Case.objects.exists()


def test_the_import_has_its_own_larger_body_limit(client, settings):
    settings.MAX_REQUEST_BODY_BYTES = 500
    body = jsonl(record_dict(), record_dict())
    assert len(body) > 500

    response = client.post(IMPORT_URL, body, content_type="application/x-ndjson")
    create = client.post(URL, record_dict(), format="json")

    assert response.status_code == 200
    assert create.status_code == 413


@pytest.mark.parametrize(
    ("data", "content_type", "code"),
    [
        ("{not json", "application/json", "parse_error"),
        (b"[\xff]", "application/json", "parse_error"),
        ("[" * 5000 + "]" * 5000, "application/json", "parse_error"),
        (json.dumps(record_dict()), "application/json", "invalid_body"),
        ("", "application/json", "empty_body"),
        ("[]", "application/json", "empty_body"),
        ("\n\n", "application/x-ndjson", "empty_body"),
        ("x", "application/x-ndjson; charset=latin-1", "parse_error"),
    ],
    ids=["not-json", "not-utf8", "too-deep", "object", "empty", "empty-array", "blank", "latin1"],
)
def test_an_unreadable_import_body_is_a_400_with_a_code(client, data, content_type, code):
    response = client.post(IMPORT_URL, data, content_type=content_type)

    assert response.status_code == 400
    assert response.json()["code"] == code
    assert not Case.objects.exists()


def test_import_lines_that_are_not_utf8_or_nested_too_deeply_are_reported_by_number(client):
    body = (
        b"\xef\xbb\xbf"  # a byte-order mark before line 1 is ignored
        + jsonl(record_dict()).encode()
        + b'{"note": "\xff"}\n'
        + ("[" * 5000 + "]" * 5000).encode()
    )

    response = client.post(IMPORT_URL, body, content_type="application/x-ndjson")

    assert response.status_code == 200, response.json()
    report = response.json()
    assert report["created"] == 1
    assert [(error["line"], error["field"]) for error in report["errors"]] == [(2, ""), (3, "")]
    assert report["errors"][0]["error"] == "The line is not valid UTF-8."


def test_an_import_in_an_unknown_media_type_is_a_415(client):
    response = client.post(IMPORT_URL, "a,b,c", content_type="text/csv")

    assert response.status_code == 415
    assert response.json()["code"] == "unsupported_media_type"


# --- Statistics -----------------------------------------------------------------------------------


def test_statistics_count_every_case_matching_the_filters(client, engineer):
    CaseFactory.create(approved=True)
    CaseFactory.create(rejected=True)
    CaseFactory.create(record=record_dict(cohort="breast-mass", diagnosis={"code": "C50.9", "label": "Malignant"}))

    everything = client.get(STATISTICS_URL).json()
    respiratory = jwt_client(engineer).get(f"{STATISTICS_URL}?cohort=respiratory").json()

    assert everything["total"] == 3
    assert everything["by_status"] == {"submitted": 1, "approved": 1, "rejected": 1, "retracted": 0}
    assert everything["by_diagnosis"] == {"C50.9": 1, "J18.9": 2}
    assert everything["deidentified"] == 1
    assert everything["rejected_by_reason"] == {"incomplete": 1}
    assert sum(bin_["count"] for bin_ in everything["quality_histogram"]) == 3
    # An ML engineer sees aggregates over all cases, not only the approved ones.
    assert respiratory["total"] == 2
    assert respiratory["by_cohort"] == {"respiratory": 2}


def test_statistics_refuse_bad_filters(client):
    response = client.get(f"{STATISTICS_URL}?min_quality=high")

    assert response.status_code == 400
    assert response.json()["code"] == "invalid"
