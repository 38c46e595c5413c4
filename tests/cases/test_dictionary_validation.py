"""Validation of a case record against a dictionary version (pure functions)."""

from __future__ import annotations

import datetime as dt

import pytest

from cases.dictionary.definition import parse_definition
from cases.dictionary.validation import validate_record
from cases.interchange import parse_record
from tests.cases.dictionary_factories import small_definition
from tests.cases.factories import record_dict

TODAY = dt.date(2026, 6, 1)
DEFINITION = parse_definition(small_definition())


def check(**overrides):
    base = {
        "encounter_date": "2026-05-01",
        "findings": {"heart_rate": 90, "temperature_c": 37.2},
        "symptoms": ["cough"],
        "diagnosis": {"code": "J18.9", "label": "Pneumonia"},
    }
    base.update(overrides)
    record = parse_record(record_dict(**base))
    return validate_record(record, DEFINITION, today=TODAY)


def test_a_record_inside_the_dictionary_has_no_errors_or_issues():
    result = check()
    assert result.ok
    assert result.quality == ()


def test_unknown_finding_keys_are_named_by_position_never_by_text():
    result = check(findings={"heart_rate": 80, "zz_private_bp": 120, "temperature_c": 37, "qq_marker": 1})
    assert [(issue.code, issue.position) for issue in result.errors] == [
        ("unknown_finding", 1),
        ("unknown_finding", 3),
    ]
    text = str(result.errors_json())
    assert "zz_private" not in text
    assert "qq_marker" not in text
    assert result.errors[0].message == "Entry 2 (of 4) is not a finding of this cohort's dictionary."


def test_unknown_symptoms_are_named_by_position():
    result = check(symptoms=["fever", "zz_family_history", "cough"])
    assert [(issue.code, issue.field, issue.position) for issue in result.errors] == [
        ("unknown_symptom", "symptoms", 1)
    ]
    assert "zz_family" not in str(result.errors_json())


@pytest.mark.parametrize(
    ("findings", "code", "field"),
    [
        ({"heart_rate": -5}, "outside_hard_limits", "findings.heart_rate"),
        ({"heart_rate": 351}, "outside_hard_limits", "findings.heart_rate"),
        ({"temperature_c": 24.9}, "outside_hard_limits", "findings.temperature_c"),
        ({"heart_rate": 80.5}, "invalid_value", "findings.heart_rate"),
        ({"smoker": 2}, "invalid_value", "findings.smoker"),
        ({"gcs_band": 5}, "invalid_value", "findings.gcs_band"),
    ],
)
def test_values_outside_hard_limits_or_type_are_errors(findings, code, field):
    result = check(findings=findings)
    assert [(issue.code, issue.field) for issue in result.errors] == [(code, field)]


def test_hard_limits_are_inclusive_and_booleans_and_categories_pass():
    assert check(findings={"heart_rate": 0, "temperature_c": 46, "smoker": 1, "gcs_band": 1}).ok


def test_values_outside_the_expected_range_are_quality_issues_not_errors():
    result = check(findings={"heart_rate": 200, "temperature_c": 34.0})
    assert result.ok
    assert [(issue.code, issue.field) for issue in result.quality] == [
        ("outside_expected_range", "findings.heart_rate"),
        ("outside_expected_range", "findings.temperature_c"),
    ]
    assert "(40..180 /min)" in result.quality[0].message
    assert "200" not in result.quality[0].message


def test_future_encounter_and_birth_after_encounter_are_errors():
    result = check(encounter_date="2026-06-02")
    assert [issue.code for issue in result.errors] == ["future_encounter"]
    assert check(encounter_date="2026-06-01").ok  # today is not the future
    record = record_dict(encounter_date="2026-05-01", findings={"heart_rate": 80}, symptoms=[])
    record["patient"]["birth_date"] = "2026-05-02"
    result = validate_record(parse_record(record), DEFINITION, today=TODAY)
    assert [(issue.code, issue.field) for issue in result.errors] == [("birth_after_encounter", "patient.birth_date")]


def test_a_diagnosis_code_outside_the_code_set_is_an_error():
    result = check(diagnosis={"code": "ZZZ", "label": "?"})
    assert [(issue.code, issue.field) for issue in result.errors] == [("unknown_diagnosis_code", "diagnosis.code")]
    assert check(diagnosis={"code": "", "label": ""}).ok  # unlabelled: a quality issue elsewhere


def test_every_error_is_reported_at_once():
    result = check(encounter_date="2099-01-01", findings={"heart_rate": -1, "bogus": 1}, symptoms=["nope"])
    assert {issue.code for issue in result.errors} == {
        "future_encounter",
        "outside_hard_limits",
        "unknown_finding",
        "unknown_symptom",
    }
