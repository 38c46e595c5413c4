"""Names and units from the data dictionary on the case pages (issue 11): the case list and its
diagnosis filter, the statistics page and API. A code no dictionary names shows alone."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from cases.dictionary import labels as labels_module
from cases.dictionary.checking import check_record
from cases.dictionary.labels import Labels, current_labels, labels_of
from cases.dictionary.units import print_unit
from cases.interchange import parse_record
from cases.models import Case, Cohort, DataDictionary
from learning_engine import roles
from tests.cases.dictionary_factories import published_dictionary, small_definition
from tests.cases.factories import CaseFactory, record_dict
from tests.conftest import jwt_client
from tests.factories import UserFactory

CHANGELIST = reverse("admin:cases_case_changelist")
STATISTICS = reverse("admin:cases_case_statistics")
STATISTICS_API = "/api/v1/cases/statistics/"
BREAST = "Malignant neoplasm of breast of unspecified site"
PNEUMONIA = "Pneumonia, unspecified organism"

pytestmark = pytest.mark.usefixtures("cold_labels")


def checked_case(**overrides: Any) -> Case:
    """A case submitted as the API does: checked against its cohort's dictionary, which it records."""
    record = parse_record(record_dict(**overrides))
    return Case.submit(record, by=UserFactory.create(), dictionary=check_record(record).dictionary)


def text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


# --- The helper -------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_labels_name_codes_and_keys_with_units_and_leave_unknown_ones_alone():
    labels = labels_of(DataDictionary.objects.get(cohort__slug="respiratory", status="published"))

    assert labels.diagnosis("J18.9") == f"J18.9 {PNEUMONIA}"
    assert labels.diagnosis_name("J18.9") == PNEUMONIA
    assert labels.finding("temperature_c") == "Body temperature (°C)"
    assert labels.finding("spo2").endswith("(%)")
    assert labels.finding_unit("wbc") == "10³/µL"
    assert labels.symptom("cough") == "Cough"
    # Legacy data: a code or key no dictionary defines reads as itself, never an error.
    assert labels.diagnosis("Z99.9") == "Z99.9"
    assert labels.diagnosis_name("Z99.9") == ""
    assert labels.finding("smith_bp") == "smith_bp"
    assert labels.finding_unit("smith_bp") == ""
    assert labels.symptom("hiccups") == "hiccups"
    assert labels.diagnosis(None) == ""
    assert labels_of(None).diagnosis("J18.9") == "J18.9"


def test_units_print_as_people_write_them():
    assert print_unit("Cel") == "°C"
    assert print_unit("mm[Hg]") == "mmHg"
    assert print_unit("1") == ""  # dimensionless: no unit after the name
    assert print_unit("pg/mL") == "pg/mL"
    finding = Labels(findings={"smoothness_mean": labels_module.FindingLabel("Smoothness (mean)", "")})
    assert finding.finding("smoothness_mean") == "Smoothness (mean)"


@pytest.mark.django_db
def test_current_labels_read_the_versions_once_and_each_definition_once_per_process(django_assert_num_queries):
    with django_assert_num_queries(1):  # which versions are current, with the definitions not seen yet
        cold = current_labels()
    with django_assert_num_queries(1):  # the same, without definitions: they are cached by hash
        warm = current_labels()

    assert cold.diagnosis("C50.9", "breast-mass") == f"C50.9 {BREAST}"
    assert warm.diagnosis("J06.9") == "J06.9 Acute upper respiratory infection, unspecified"
    # A code is named in its own cohort only; unnamed, it shows alone.
    assert warm.diagnosis("C50.9", "respiratory") == "C50.9"
    assert warm.diagnosis("C50.9", "no-such-cohort") == "C50.9"


@pytest.mark.django_db
def test_a_newer_published_version_renames_and_the_cohort_with_a_clash_earliest_in_slug_order_wins():
    renamed = small_definition(diagnoses=[{"code": "J18.9", "display_name": "Pneumonia (renamed)"}])
    published_dictionary("small", definition=small_definition())
    published_dictionary("small", definition=renamed)
    published_dictionary("aaa-first", definition=small_definition())

    names = current_labels()

    assert names.diagnosis_name("J18.9", "small") == "Pneumonia (renamed)"
    assert names.diagnosis_name("J18.9") == PNEUMONIA  # aaa-first, respiratory, small: aaa-first wins
    assert names.diagnosis_name("J18.9", "respiratory") == PNEUMONIA


# --- The case list and its filter ------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("role", [roles.CLINICIAN, roles.ML_ENGINEER])
def test_the_case_list_shows_each_diagnosis_with_its_name_and_an_unknown_code_alone(staff, role):
    client, _ = staff(role)
    CaseFactory.create(approved=True)
    CaseFactory.create(approved=True, record=record_dict(cohort="breast-mass", diagnosis={"code": "C50.9"}))
    CaseFactory.create(approved=True, record=record_dict(diagnosis={"code": "Z99.9", "label": "legacy"}))

    response = client.get(CHANGELIST)

    assert response.status_code == 200
    page = text(response.content.decode())
    assert f"J18.9 {PNEUMONIA}" in page
    assert f"C50.9 {BREAST}" in page
    assert "Z99.9 " in page
    assert "Z99.9 legacy" not in page  # the raw label is the record's, not a dictionary name


@pytest.mark.django_db
def test_the_diagnosis_filter_offers_codes_with_their_names(staff):
    client, _ = staff(roles.CLINICIAN)
    CaseFactory.create()
    CaseFactory.create(record=record_dict(cohort="breast-mass", diagnosis={"code": "C50.9"}))
    CaseFactory.create(record=record_dict(diagnosis={"code": "Z99.9"}))

    response = client.get(CHANGELIST)
    spec = next(f for f in response.context["cl"].filter_specs if getattr(f, "lookup_kwarg", "") == "diagnosis_code")
    displays = [choice["display"] for choice in spec.choices(response.context["cl"])]

    assert displays == ["All", f"C50.9 {BREAST}", f"J18.9 {PNEUMONIA}", "Z99.9"]
    assert f"C50.9 {BREAST}" in text(response.content.decode())
    # Choosing one still filters by the code.
    filtered = client.get(f"{CHANGELIST}?diagnosis_code=C50.9")
    assert [case.diagnosis_code for case in filtered.context["cl"].result_list] == ["C50.9"]


@pytest.mark.django_db
def test_the_diagnosis_filter_keeps_facet_counts(staff):
    client, _ = staff(roles.CLINICIAN)
    CaseFactory.create()
    CaseFactory.create()

    page = text(client.get(f"{CHANGELIST}?_facets=1").content.decode())

    assert f"J18.9 {PNEUMONIA} (2)" in page


def _list_queries(client) -> tuple[int, int]:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(CHANGELIST)
    assert response.status_code == 200
    return len(queries), len(response.context["cl"].result_list)


@pytest.mark.django_db
def test_names_cost_the_case_list_the_same_queries_for_5_cases_as_for_60(staff):
    client, _ = staff(roles.ML_ENGINEER)
    for index in range(5):
        cohort = "breast-mass" if index % 2 else "respiratory"
        code = "C50.9" if index % 2 else "J18.9"
        CaseFactory.create(approved=True, record=record_dict(cohort=cohort, diagnosis={"code": code}))
    client.get(CHANGELIST)  # definitions parsed: the warm path of a running server
    few, few_rows = _list_queries(client)
    for _ in range(55):
        CaseFactory.create(approved=True, record=record_dict(diagnosis={"code": "J06.9"}))
    many, many_rows = _list_queries(client)

    assert (few_rows, many_rows) == (5, 60)
    assert many == few


@pytest.mark.django_db
def test_the_case_list_reads_the_dictionaries_once_per_page(staff):
    client, _ = staff(roles.ML_ENGINEER)
    CaseFactory.create(approved=True)
    client.get(CHANGELIST)

    with CaptureQueriesContext(connection) as queries:
        client.get(CHANGELIST)

    reads = [q["sql"] for q in queries if "cases_datadictionary" in q["sql"]]
    assert len(reads) == 1  # the column and the filter share it; definitions are cached


# --- Statistics: page and API ------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_statistics_page_names_diagnoses_and_gives_findings_with_units(staff):
    client, _ = staff(roles.CLINICIAN)  # submitted cases' findings: summarised for PHI users only
    for temperature in (37.0, 38.0, 39.0, 40.0, 45.0):
        checked_case(findings={"temperature_c": temperature, "heart_rate": 90})
    CaseFactory.create(record=record_dict(diagnosis={"code": "Z99.9"}))

    response = client.get(STATISTICS)

    assert response.status_code == 200
    page = text(response.content.decode())
    assert f"J18.9 {PNEUMONIA} 5" in page
    assert "Z99.9 1" in page  # an unnamed code shows alone
    respiratory_name = Cohort.objects.get(slug="respiratory").name
    assert f"respiratory {respiratory_name} 6" in page  # the cohort with its name
    assert "Findings of respiratory (data dictionary version 1)" in page
    # Five temperatures, mean 39.8 °C, one (45) outside the expected range 30..44.
    assert "Body temperature temperature_c °C 5 39.8 °C 1" in page
    # Heart rate: five values too, a unit of /min.
    assert "Heart rate heart_rate /min 5 90 /min 0" in page
    # Fewer than five cases: no mean (it would be one patient's value).
    assert re.search(r"Oxygen saturation[^|]*? spo2 % 0 — 0", page)


@pytest.mark.django_db
def test_the_statistics_api_adds_display_names_and_finding_summaries(make_user):
    api = jwt_client(make_user(roles.CLINICIAN))  # submitted cases' findings: summarised for PHI users only
    for _ in range(5):
        checked_case(findings={"temperature_c": 38.0, "heart_rate": 100})
    checked_case(cohort="breast-mass", diagnosis={"code": "C50.9"}, findings={"mean_radius": 14.0}, symptoms=[])
    CaseFactory.create(record=record_dict(diagnosis={"code": "Z99.9"}))

    stats = api.get(STATISTICS_API).json()

    assert stats["by_diagnosis"] == {"C50.9": 1, "J18.9": 5, "Z99.9": 1}  # unchanged
    assert stats["diagnoses"] == [
        {"code": "C50.9", "display_name": BREAST, "cases": 1},
        {"code": "J18.9", "display_name": PNEUMONIA, "cases": 5},
        {"code": "Z99.9", "display_name": "", "cases": 1},
    ]
    findings = {(row["cohort"], row["key"]): row for row in stats["findings"]}
    assert findings[("respiratory", "temperature_c")] == {
        "cohort": "respiratory",
        "dictionary_version": 1,
        "key": "temperature_c",
        "display_name": "Body temperature",
        "unit": "Cel",
        "unit_display": "°C",
        "value_type": "number",
        "cases": 5,
        "mean": 38.0,
        "outside_expected_range": 0,
    }
    radius = findings[("breast-mass", "mean_radius")]
    assert (radius["cases"], radius["mean"]) == (1, None)  # below five cases: counted, no mean


@pytest.mark.django_db
def test_the_statistics_api_costs_the_same_queries_for_5_cases_as_for_40(make_user):
    api = jwt_client(make_user(roles.ML_ENGINEER))
    for _ in range(5):
        checked_case()
    api.get(STATISTICS_API)
    with CaptureQueriesContext(connection) as few:
        api.get(STATISTICS_API)
    for _ in range(35):
        checked_case(cohort="breast-mass", diagnosis={"code": "D24.9"}, findings={"mean_radius": 12.0}, symptoms=[])
    with CaptureQueriesContext(connection) as many:
        stats = api.get(STATISTICS_API).json()

    assert stats["total"] == 40
    # One aggregate more for the second cohort with cases; nothing per case.
    assert len(many) == len(few) + 1


# --- Statistics: no finding value of a case the user may not see -------------------------------------


def _summary(stats: dict[str, Any], key: str) -> tuple[int, float | None, int]:
    row = next(row for row in stats["findings"] if (row["cohort"], row["key"]) == ("respiratory", key))
    return row["cases"], row["mean"], row["outside_expected_range"]


@pytest.mark.django_db
@pytest.mark.parametrize("role", [roles.ML_ENGINEER, roles.CLINICAL_LEAD])
def test_without_phi_access_finding_summaries_are_over_deidentified_cases_only(make_user, role):
    """Without the PHI permission a submitted or rejected case does not exist for the user: its
    findings must not be computable from two summaries either (the mean over the approved cases,
    then over them and one rejected case, gives that case's value)."""
    api = jwt_client(make_user(role))
    reviewer = make_user(roles.CLINICIAN)
    for temperature in (37.0, 38.0, 39.0, 40.0, 41.0):
        checked_case(findings={"temperature_c": temperature}).approve(by=reviewer)
    hidden = checked_case(findings={"temperature_c": 45.5})  # outside the expected range 30..44
    before = api.get(STATISTICS_API, {"status": "approved"}).json()
    hidden.reject(by=reviewer, reason="other", note="Wrong patient.")

    both = api.get(STATISTICS_API, {"status": ["approved", "rejected"]}).json()
    everything = api.get(STATISTICS_API).json()

    assert _summary(before, "temperature_c") == (5, 39.0, 0)
    assert _summary(both, "temperature_c") == _summary(before, "temperature_c")
    assert _summary(everything, "temperature_c") == _summary(before, "temperature_c")
    assert both["by_status"]["rejected"] == 1  # the counts stay over every case


@pytest.mark.django_db
def test_with_phi_access_finding_summaries_are_over_every_checked_case(make_user):
    api = jwt_client(make_user(roles.CLINICIAN))
    for temperature in (37.0, 38.0, 39.0, 40.0, 41.0):
        checked_case(findings={"temperature_c": temperature})

    assert _summary(api.get(STATISTICS_API).json(), "temperature_c") == (5, 39.0, 0)


@pytest.mark.django_db
def test_the_statistics_page_without_phi_access_summarises_deidentified_cases_only(staff, make_user):
    reviewer = make_user(roles.CLINICIAN)
    for temperature in (37.0, 38.0, 39.0, 40.0, 41.0):
        checked_case(findings={"temperature_c": temperature}).approve(by=reviewer)
    checked_case(findings={"temperature_c": 45.5})

    engineer = text(staff(roles.ML_ENGINEER)[0].get(STATISTICS).content.decode())
    clinician = text(staff(roles.CLINICIAN)[0].get(STATISTICS).content.decode())

    assert "Body temperature temperature_c °C 5 39 °C 0" in engineer
    assert "Body temperature temperature_c °C 6 40.08 °C 1" in clinician
