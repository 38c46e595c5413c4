"""Every way a case comes in goes through its cohort's data dictionary: the API (create, edit),
the import, feedback; and the data migration that checked the cases already on file."""

from __future__ import annotations

import datetime as dt
import importlib
import json
from unittest import mock

import pytest
from django.apps import apps
from django.utils import timezone

from cases.interchange import parse_record
from cases.models import Case, DataDictionary
from learning_engine import roles
from tests.cases.factories import record_dict

pytestmark = pytest.mark.django_db
CASES = "/api/v1/cases/"
IMPORT = "/api/v1/cases/import/"
SECRET_KEY_TEXT = "zz_doe_private"  # a findings key that must never be echoed


@pytest.fixture
def clinician_api(api_client_for):
    return api_client_for(roles.CLINICIAN)


def respiratory() -> DataDictionary:
    return DataDictionary.objects.get(cohort__slug="respiratory", status="published")


# --- API create ----------------------------------------------------------------------------------


def test_a_valid_case_records_the_dictionary_version_it_was_checked_against(clinician_api):
    response = clinician_api.post(CASES, record_dict(), format="json")
    assert response.status_code == 201, response.json()
    case = Case.objects.get(pk=response.json()["id"])
    assert case.dictionary == respiratory()
    assert case.dictionary_errors == []


def test_an_unknown_cohort_is_400_and_nothing_is_saved(clinician_api):
    response = clinician_api.post(CASES, record_dict(cohort="no-such-cohort"), format="json")
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "unknown_cohort"
    assert body["errors"] == [{"code": "unknown_cohort", "field": "cohort", "message": body["detail"]}]
    assert not Case.objects.exists()


def test_unknown_keys_are_400_naming_positions_never_the_keys(clinician_api):
    record = record_dict(
        findings={"heart_rate": 90, SECRET_KEY_TEXT: 1, "spo2": 97},
        symptoms=["cough", "zz_smith_family"],
    )
    response = clinician_api.post(CASES, record, format="json")
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "dictionary_violation"
    assert (body["cohort"], body["dictionary_version"]) == ("respiratory", 1)
    assert [(e["code"], e["field"], e["position"]) for e in body["errors"]] == [
        ("unknown_finding", "findings", 1),
        ("unknown_symptom", "symptoms", 1),
    ]
    assert SECRET_KEY_TEXT not in response.content.decode()
    assert "smith" not in response.content.decode()
    assert not Case.objects.exists()


def test_hard_limits_future_encounters_and_births_after_the_encounter_are_refused(clinician_api):
    record = record_dict(encounter_date="2099-01-01", findings={"heart_rate": -5, "temperature_c": 101.3})
    record["patient"]["birth_date"] = "2100-01-01"
    response = clinician_api.post(CASES, record, format="json")
    assert response.status_code == 400
    assert sorted((e["code"], e["field"]) for e in response.json()["errors"]) == [
        ("birth_after_encounter", "patient.birth_date"),
        ("future_encounter", "encounter_date"),
        ("outside_hard_limits", "findings.heart_rate"),
        ("outside_hard_limits", "findings.temperature_c"),
    ]
    assert "101.3" not in response.content.decode()


def test_a_breast_mass_case_with_a_negative_radius_is_refused(clinician_api):
    from cases import demo

    record = next(demo.breast_mass_records())
    record["findings"]["mean_radius"] = -5
    response = clinician_api.post(CASES, record, format="json")
    assert response.status_code == 400
    assert [(e["code"], e["field"]) for e in response.json()["errors"]] == [
        ("outside_hard_limits", "findings.mean_radius")
    ]


def test_outside_the_expected_range_is_taken_with_a_quality_issue_from_the_dictionary(clinician_api):
    # NT-proBNP has no entry in the old fixed table (cases/quality.py): only the dictionary's
    # expected range (0..70000 pg/mL) makes 80000 implausible; its hard limits let it in.
    response = clinician_api.post(CASES, record_dict(findings={"nt_probnp": 80000, "spo2": 97}), format="json")
    assert response.status_code == 201
    issue = {
        "code": "implausible_value",
        "field": "findings.nt_probnp",
        "message": "findings.nt_probnp is outside 0..70000.",
    }
    assert issue in response.json()["quality_issues"]


def test_a_diagnosis_outside_the_code_set_is_refused(clinician_api):
    response = clinician_api.post(CASES, record_dict(diagnosis={"code": "ZZZ", "label": "?"}), format="json")
    assert response.status_code == 400
    assert [e["code"] for e in response.json()["errors"]] == ["unknown_diagnosis_code"]


# --- API edit ------------------------------------------------------------------------------------


def test_an_edit_is_checked_too_and_a_refused_edit_changes_nothing(clinician_api):
    created = clinician_api.post(CASES, record_dict(), format="json").json()
    url = f"{CASES}{created['id']}/"
    refused = clinician_api.patch(url, {"findings": {SECRET_KEY_TEXT: 3}}, format="json")
    assert refused.status_code == 400
    assert refused.json()["errors"][0]["code"] == "unknown_finding"
    assert SECRET_KEY_TEXT not in refused.content.decode()
    case = Case.objects.get(pk=created["id"])
    assert SECRET_KEY_TEXT not in case.findings
    assert case.revision == 1
    accepted = clinician_api.patch(url, {"findings": {"crp": 12.5}}, format="json")
    assert accepted.status_code == 200, accepted.json()
    case.refresh_from_db()
    assert case.findings["crp"] == 12.5
    assert case.dictionary == respiratory()


# --- Import --------------------------------------------------------------------------------------


def test_import_reports_refused_records_by_line_and_takes_the_others(clinician_api):
    good = record_dict()
    unknown = record_dict(findings={SECRET_KEY_TEXT: 1})
    elsewhere = record_dict(cohort="no-such-cohort")
    response = clinician_api.post(IMPORT, [good, unknown, elsewhere], format="json")
    assert response.status_code == 200, response.json()
    report = response.json()
    assert (report["created"], report["failed"]) == (1, 2)
    assert report["errors"] == [
        {
            "line": 2,
            "field": "findings",
            "error": "Entry 1 (of 1) is not a finding of this cohort's dictionary.",  # the field is not named twice
        },
        {"line": 3, "field": "cohort", "error": report["errors"][1]["error"]},
    ]
    assert report["errors"][1]["error"].startswith("No such cohort.")
    assert SECRET_KEY_TEXT not in response.content.decode()
    assert Case.objects.get().dictionary == respiratory()


def test_import_lines_also_checks(clinician_api):
    lines = "\n".join(json.dumps(record) for record in (record_dict(), record_dict(symptoms=["telepathy"])))
    response = clinician_api.post(IMPORT, lines, content_type="application/x-ndjson")
    report = response.json()
    assert (report["created"], report["failed"]) == (1, 1)
    assert report["errors"][0]["line"] == 2
    assert "telepathy" not in response.content.decode()


def test_an_import_going_past_local_midnight_checks_the_later_records_against_the_new_day():
    """An import asks the site's date once per local day (``DictionaryCache.today``), not once per
    record: a record of the new day is a future encounter just before midnight, and taken after."""
    from cases.dictionary.checking import DictionaryCache, RecordRefused, check_record

    zone = timezone.get_current_timezone()
    record = parse_record(record_dict(encounter_date="2026-03-08"))
    cache = DictionaryCache()
    with mock.patch("django.utils.timezone.now") as now:
        now.return_value = dt.datetime(2026, 3, 7, 23, 59, 59, 999999, tzinfo=zone)
        with pytest.raises(RecordRefused) as refused:
            check_record(record, cache=cache)
        assert [issue.code for issue in refused.value.issues] == ["future_encounter"]
        now.return_value = dt.datetime(2026, 3, 8, tzinfo=zone)
        assert check_record(record, cache=cache).dictionary == respiratory()
        assert cache.today() == dt.date(2026, 3, 8)


# --- Feedback ------------------------------------------------------------------------------------


@pytest.mark.usefixtures("fresh_serving")
def test_feedback_with_a_code_outside_the_code_set_is_400_and_not_counted(make_user):
    from models_registry.models import Feedback
    from tests.conftest import jwt_client
    from tests.models_registry.serving.factories import PNEUMONIA_FEATURES, served_version

    served_version()
    client = jwt_client(make_user(roles.PREDICTION_CLIENT))
    prediction = client.post("/api/v1/model-types/diagnosis/predict/", PNEUMONIA_FEATURES, format="json").json()
    url = f"/api/v1/predictions/{prediction['id']}/feedback/"
    refused = client.post(url, {"diagnosis_code": "ZZZ"}, format="json")
    assert refused.status_code == 400
    assert refused.json()["code"] == "unknown_diagnosis_code"
    assert not Feedback.objects.exists()
    assert client.post(url, {"diagnosis_code": "J06.9"}, format="json").status_code == 201


# --- The data migration --------------------------------------------------------------------------


def test_the_migration_flags_cases_that_fail_and_keeps_them(clinician):
    migration = importlib.import_module("cases.migrations.0006_case_dictionary")
    good = Case.submit(parse_record(record_dict()), by=clinician)
    bad = Case.submit(parse_record(record_dict(findings={"heart_rate": 90, SECRET_KEY_TEXT: 2})), by=clinician)
    orphan = Case.submit(parse_record(record_dict(cohort="legacy-cohort")), by=clinician)
    migration.check_existing_cases(apps, None)
    for case in (good, bad, orphan):
        case.refresh_from_db()
    assert (good.dictionary, good.dictionary_errors) == (respiratory(), [])
    assert bad.dictionary is None
    assert bad.dictionary_errors == [
        {
            "code": "unknown_finding",
            "field": "findings",
            "message": "Entry 2 (of 2) is not a finding of this cohort's dictionary.",
            "position": 1,
        }
    ]
    assert SECRET_KEY_TEXT in bad.findings  # kept as it was, for review
    assert [issue["code"] for issue in orphan.dictionary_errors] == ["unknown_cohort"]
    assert Case.objects.count() == 3


# --- The admin's case form -----------------------------------------------------------------------


def test_the_admin_form_shows_each_dictionary_error_beside_its_field(client, make_user):
    from django.urls import reverse

    from tests.cases.test_admin import add_form_data

    client.force_login(make_user(roles.CLINICIAN, is_staff=True))
    record = record_dict(findings={"heart_rate": -5}, encounter_date="2099-01-01")
    add = reverse("admin:cases_case_add") + "?cohort=respiratory"
    data = add_form_data(record) | {"diagnosis_code": "ZZZ", "_save": "Save"}
    response = client.post(add, data)
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert set(errors) == {"encounter_date", "finding_heart_rate", "diagnosis_code"}
    assert not Case.objects.exists()
    response = client.post(reverse("admin:cases_case_add") + "?cohort=no-such-cohort", data)
    assert "No such cohort" in response.content.decode()
    assert not Case.objects.exists()
    good = data | {"encounter_date": "2025-01-01", "finding_heart_rate": "80", "diagnosis_code": "J18.9"}
    assert client.post(add, good).status_code == 302
    assert Case.objects.get().dictionary == respiratory()


def test_flagged_cases_are_found_with_the_admin_filter(client, make_user, clinician):
    from django.urls import reverse

    migration = importlib.import_module("cases.migrations.0006_case_dictionary")
    good = Case.submit(parse_record(record_dict()), by=clinician)
    bad = Case.submit(parse_record(record_dict(findings={SECRET_KEY_TEXT: 2})), by=clinician)
    migration.check_existing_cases(apps, None)
    client.force_login(make_user(roles.CLINICIAN, is_staff=True))
    changelist = reverse("admin:cases_case_changelist")
    for value, expected in (("failed", [bad.pk]), ("passed", [good.pk]), ("unchecked", [])):
        response = client.get(changelist, {"dictionary_check": value, "status__exact": "submitted"})
        assert response.status_code == 200
        assert [case.pk for case in response.context["cl"].result_list] == expected


def test_validate_cases_clears_flags_once_the_dictionary_takes_the_case(clinician, lead):
    import io

    from django.core.management import call_command

    from tests.cases.dictionary_factories import small_definition

    flagged = Case.submit(parse_record(record_dict(cohort="legacy", findings={"heart_rate": 80})), by=clinician)
    importlib.import_module("cases.migrations.0006_case_dictionary").check_existing_cases(apps, None)
    flagged.refresh_from_db()
    assert [issue["code"] for issue in flagged.dictionary_errors] == ["unknown_cohort"]

    from tests.cases.dictionary_factories import published_dictionary

    published = published_dictionary("legacy", by=lead, definition=small_definition())
    out = io.StringIO()
    call_command("validate_cases", "--cohort", "legacy", "--dry-run", stdout=out)
    assert "1 passed, 0 flagged for review (dry run" in out.getvalue()
    flagged.refresh_from_db()
    assert flagged.dictionary_errors != []
    call_command("validate_cases", stdout=out)
    flagged.refresh_from_db()
    assert (flagged.dictionary, flagged.dictionary_errors) == (published, [])
    with pytest.raises(Exception, match="No cohort 'nope'"):
        call_command("validate_cases", "--cohort", "nope", stdout=out)
