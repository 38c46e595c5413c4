"""The quality score of a case: each check, the score's range, and issue messages free of PHI."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cases import quality
from cases.interchange import CaseRecord, parse_record

TODAY = dt.date(2026, 6, 1)
ENCOUNTER = dt.date(2026, 5, 2)


def make(**overrides: Any) -> CaseRecord:
    """A perfect record; ``patient`` overrides merge into the patient block (None removes a key)."""
    patient = {"mrn": "MRN-448812", "name": "Jane Q. Doe", "birth_date": "1957-03-14", "sex": "female"}
    for key, value in overrides.pop("patient", {}).items():
        if value is None:
            patient.pop(key, None)
        else:
            patient[key] = value
    data: dict[str, Any] = {
        "external_id": "enc-1",
        "source": "st-marys",
        "cohort": "respiratory",
        "patient": patient,
        "encounter_date": ENCOUNTER.isoformat(),
        "findings": {"temperature_c": 38.6, "heart_rate": 112, "spo2": 91, "wbc": 14.2},
        "symptoms": ["cough", "fever"],
        "note": "Cough and fever for three days.",
        "diagnosis": {"code": "J18.9", "label": "Pneumonia, unspecified organism"},
    }
    data.update(overrides)
    return parse_record(data)


def assess(record: CaseRecord) -> tuple[float, list[dict[str, str]]]:
    return quality.assess(record, today=TODAY)


def codes(record: CaseRecord) -> list[tuple[str, str]]:
    return [(issue["code"], issue["field"]) for issue in assess(record)[1]]


def test_a_perfect_record_scores_one_with_no_issues():
    assert assess(make()) == (1.0, [])


# --- Each check ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"patient": {"birth_date": None}}, "patient.birth_date"),
        ({"patient": {"sex": None}}, "patient.sex"),
        ({"findings": {}}, "findings"),
        ({"findings": None}, "findings"),
    ],
)
def test_a_missing_required_field_is_an_issue(overrides, field):
    score, _ = assess(make(**overrides))
    assert codes(make(**overrides)) == [("missing_required", field)]
    assert score < 1.0


def test_several_missing_fields_are_listed_but_cost_the_check_once():
    one = make(patient={"sex": None})
    three = make(patient={"sex": None, "birth_date": None}, findings={})
    assert [code for code, _ in codes(three)] == ["missing_required"] * 3
    # Without a birth date the age checks do not apply, so the shares differ slightly; both are
    # well below a record with a single cheaper issue.
    assert assess(three)[0] <= assess(one)[0] < assess(make(note=""))[0]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("temperature_c", 45.0),
        ("temperature_c", 29.9),
        ("heart_rate", 300),
        ("spo2", 101),
        ("spo2", 40),
        ("wbc", 0),
        ("systolic_bp", 400),
        ("glucose", 0.5),
        ("perimeter_mean", -1.0),  # a finding without a known range must not be negative
    ],
)
def test_a_finding_outside_its_plausible_range_is_an_issue(name, value):
    record = make(findings={"heart_rate": 80, name: value})
    assert codes(record) == [("implausible_value", f"findings.{name}")]
    assert assess(record)[0] < 1.0


@pytest.mark.parametrize("name", sorted(quality.PLAUSIBLE_RANGES))
def test_the_bounds_of_each_plausible_range_are_plausible(name):
    low, high = quality.PLAUSIBLE_RANGES[name]
    assert assess(make(findings={name: low}))[1] == []
    assert assess(make(findings={name: high}))[1] == []


def test_an_unknown_finding_may_be_any_non_negative_number():
    assert assess(make(findings={"perimeter_mean": 0, "area_worst": 4254.0}))[1] == []


@pytest.mark.parametrize(
    ("birth", "expected"),
    [
        ("2026-05-02", []),  # born on the day of the encounter: age 0
        ("1906-05-02", []),  # 120th birthday on the day
        ("1905-05-03", []),  # still 120, 121 tomorrow
        ("1905-05-02", [("implausible_age", "patient.birth_date")]),  # 121
        ("1850-01-01", [("implausible_age", "patient.birth_date")]),
    ],
)
def test_the_age_at_the_encounter_must_be_0_to_120(birth, expected):
    assert codes(make(patient={"birth_date": birth})) == expected


def test_an_encounter_in_the_future_is_an_issue():
    assert codes(make(encounter_date=(TODAY + dt.timedelta(days=1)).isoformat())) == [
        ("future_encounter", "encounter_date")
    ]
    assert codes(make(encounter_date=TODAY.isoformat())) == []


def test_today_defaults_to_the_sites_calendar_day():
    from django.utils import timezone

    tomorrow = timezone.localdate() + dt.timedelta(days=1)
    issues = quality.assess(make(encounter_date=tomorrow.isoformat()))[1]
    assert [issue["code"] for issue in issues] == ["future_encounter"]
    assert quality.assess(make(encounter_date=timezone.localdate().isoformat()))[1] == []


def test_a_birth_after_the_encounter_is_one_issue_not_two():
    record = make(patient={"birth_date": "2026-05-03"})
    assert codes(record) == [("birth_after_encounter", "patient.birth_date")]
    # Weighed once: the age check cannot run on a negative age, so it is left out of the share
    # (as every check that does not apply) instead of failing as well.
    weights = quality.WEIGHTS
    applicable = sum(weights.values()) - weights["implausible_age"]
    assert assess(record)[0] == round(1 - weights["birth_after_encounter"] / applicable, 4)


@pytest.mark.parametrize("note", ["", "   \n  "])
def test_an_empty_note_is_an_issue(note):
    assert codes(make(note=note)) == [("missing_note", "note")]


@pytest.mark.parametrize("diagnosis", [None, {"code": "", "label": "Pneumonia"}, {"label": "Pneumonia"}])
def test_a_missing_label_is_an_issue(diagnosis):
    assert codes(make(diagnosis=diagnosis)) == [("missing_label", "diagnosis.code")]


def test_a_missing_label_costs_more_than_a_missing_note():
    assert assess(make(diagnosis=None))[0] < assess(make(note=""))[0] < 1.0


def test_a_record_failing_every_applicable_check_scores_zero():
    record = make(
        patient={"birth_date": None, "sex": None},
        findings={"spo2": 20},
        encounter_date="2027-01-01",
        note="",
        diagnosis=None,
    )
    score, issues = assess(record)
    assert score == 0.0
    assert {issue["code"] for issue in issues} == {
        "missing_required",
        "implausible_value",
        "future_encounter",
        "missing_note",
        "missing_label",
    }


def test_an_unparseable_stored_birth_date_counts_as_missing():
    # Not through parse_record (an edit in the admin, say): scoring must not crash on it.
    record = dataclasses.replace(make(), patient={"mrn": "MRN-1", "sex": "female", "birth_date": "14/03/1957"})
    assert codes(record) == [("missing_required", "patient.birth_date")]


# --- Range and privacy ---------------------------------------------------------------------------

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(
    findings=st.dictionaries(st.sampled_from([*quality.PLAUSIBLE_RANGES, "other", "area_mean"]), finite, max_size=6),
    birth=st.one_of(st.none(), st.dates(dt.date(1850, 1, 1), dt.date(2030, 12, 31))),
    sex=st.sampled_from([None, "female", "male"]),
    encounter=st.dates(dt.date(2000, 1, 1), dt.date(2030, 12, 31)),
    note=st.sampled_from(["", "Cough."]),
    code=st.sampled_from(["", "J18.9"]),
)
def test_the_score_is_always_between_0_and_1_and_1_only_without_issues(findings, birth, sex, encounter, note, code):
    record = make(
        patient={"birth_date": birth.isoformat() if birth else None, "sex": sex},
        findings=findings,
        encounter_date=encounter.isoformat(),
        note=note,
        diagnosis={"code": code, "label": ""},
    )
    score, issues = assess(record)
    assert 0.0 <= score <= 1.0
    assert (score == 1.0) == (issues == [])
    assert all(issue["code"] in quality.WEIGHTS for issue in issues)
    assert all(set(issue) == {"code", "field", "message"} for issue in issues)


def test_issue_messages_never_contain_patient_values():
    patient_values = {
        "mrn": "MRN-77123401",
        "name": "Xanthippe Quarrington",
        "birth_date": "2031-07-19",  # after the encounter
        "sex": "female",
        "zip": "02139",
        "phone": "617-555-0199",
        "email": "xq@example.org",
        "address": "12 Zephyr Lane, Quahog",
        "ssn": "078-05-1120",
    }
    record = make(
        patient=patient_values,
        findings={"temperature_c": 47.123, "spo2": 12.345},
        encounter_date="2030-02-03",
        note="",
        diagnosis=None,
    )
    _, issues = quality.assess(record, today=dt.date(2026, 1, 1))
    assert len(issues) == 6

    text = json.dumps(issues)
    identifying = [value for key, value in patient_values.items() if key != "sex"]
    leaked = [value for value in [*identifying, "2031", "47.123", "12.345", "2030-02-03"] if value in text]
    assert leaked == []
