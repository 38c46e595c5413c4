"""FHIR R4 resources to the interchange record (cases.fhir.mapping): pure functions, no database."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import pytest

from cases.dictionary.definition import parse_definition
from cases.fhir import mapping, synthetic, units
from cases.fhir.resources import ResourceInvalid

DICTIONARIES = Path(__file__).resolve().parents[2] / "cases" / "dictionaries"
RESPIRATORY = parse_definition(json.loads((DICTIONARIES / "respiratory.json").read_text())["dictionary"])
MRN = "MRN-4471902"
NAME = "Rosalind Quennell"
RECORD: dict[str, Any] = {
    "external_id": "enc-1",
    "source": "st-mary",
    "cohort": "respiratory",
    "patient": {
        "mrn": MRN,
        "name": NAME,
        "birth_date": "1951-03-04",
        "sex": "female",
        "zip": "02139",
        "address": "12 Quennell Lane",
        "phone": "617-555-0142",
        "ssn": "123-45-6789",
        "email": "rq@example.org",
    },
    "encounter_date": "2025-11-02",
    "findings": {
        "temperature_c": 38.4,
        "heart_rate": 104,
        "respiratory_rate": 24,
        "spo2": 91,
        "systolic_bp": 118,
        "wbc": 13.2,
        "crp": 88,
        "nt_probnp": 240,
    },
    "diagnosis": {"code": "J18.9", "label": "Pneumonia"},
}


def resources(record=RECORD):
    patient = synthetic.patient_resource(record)
    encounter, *rest = synthetic.encounter_resources(record, RESPIRATORY, patient_id=patient["id"])
    observations = [item for item in rest if item["resourceType"] == "Observation"]
    conditions = [item for item in rest if item["resourceType"] == "Condition"]
    return patient, encounter, observations, conditions


def observation(loinc, value, unit, *, system=synthetic.UCUM, **extra):
    resource = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": mapping.LOINC, "code": loinc}]},
        "valueQuantity": {"value": value, "unit": unit, "system": system, "code": unit},
    }
    resource.update(extra)
    return resource


def condition(*codings, status="confirmed", cid=None):
    resource = {
        "resourceType": "Condition",
        "subject": {"reference": "Patient/p"},
        "code": {"coding": [{"system": system, "code": code} for system, code in codings]},
        "verificationStatus": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": status}]
        },
    }
    if cid:
        resource["id"] = cid
    return resource


def codes(problems):
    return [(problem.code, problem.field) for problem in problems]


# --- Patient ---------------------------------------------------------------------------------------


def test_the_patient_gives_mrn_from_the_mr_typed_identifier_and_the_other_identifiers():
    patient, *_ = resources()
    identity, problems = mapping.map_patient(patient)
    # The first identifier is Synthea's own id: the MRN is the one typed MR, not the first.
    assert patient["identifier"][0]["value"] != MRN
    assert identity == {
        "mrn": MRN,
        "ssn": "123-45-6789",
        "name": NAME,
        "birth_date": "1951-03-04",
        "sex": "female",
        "address": "12 Quennell Lane",
        "zip": "02139",
        "phone": "617-555-0142",
        "email": "rq@example.org",
    }
    assert problems == []


def test_a_patient_without_an_mr_identifier_is_a_missing_problem_that_names_no_identifier():
    patient, *_ = resources()
    patient["identifier"] = [item for item in patient["identifier"] if item.get("type", {}).get("text") is None]
    identity, problems = mapping.map_patient(patient)
    assert "mrn" not in identity
    assert codes(problems) == [("missing", "patient.mrn")]
    assert MRN not in str(problems)
    assert NAME.split()[1] not in str(problems)


def test_a_partial_birth_date_and_an_unknown_gender_are_left_out_with_problems():
    patient, *_ = resources()
    patient["birthDate"] = "1951"
    patient["gender"] = "Quennell"
    identity, problems = mapping.map_patient(patient)
    assert "birth_date" not in identity
    assert "sex" not in identity
    assert codes(problems) == [("invalid_patient", "patient.birth_date"), ("invalid_patient", "patient.sex")]
    assert "Quennell" not in str(problems)


def test_an_invalid_patient_is_refused_by_fhir_resources_without_its_values():
    patient, *_ = resources()
    patient["birthDate"] = NAME
    with pytest.raises(ResourceInvalid) as refused:
        mapping.map_patient(patient)
    assert refused.value.path == "birthDate"
    assert "Rosalind" not in str(refused.value)
    # An element FHIR does not define is named by where it is, never by its (sender-chosen) name.
    patient, *_ = resources()
    patient["Quennell_4471902"] = 1
    with pytest.raises(ResourceInvalid) as refused:
        mapping.map_patient(patient)
    assert "Quennell" not in str(refused.value)
    assert "4471902" not in str(refused.value)
    assert "does not define" in str(refused.value)


def test_a_resource_of_another_type_is_refused_where_a_patient_is_expected():
    _, encounter, _, _ = resources()
    with pytest.raises(ResourceInvalid, match="must be Patient"):
        mapping.map_patient(encounter)


# --- Observations ----------------------------------------------------------------------------------


def test_every_finding_of_the_record_comes_back_from_its_observations():
    _, _, observations, _ = resources()
    findings, problems = mapping.map_observations(observations, RESPIRATORY)
    assert findings == {key: float(value) for key, value in RECORD["findings"].items()}
    assert problems == []


def test_systolic_pressure_is_read_from_the_blood_pressure_panels_component():
    _, _, observations, _ = resources()
    panel = next(item for item in observations if item["code"]["coding"][0]["code"] == synthetic.BP_PANEL)
    findings, _ = mapping.map_observations([panel], RESPIRATORY)
    assert findings == {"systolic_bp": 118.0}


@pytest.mark.parametrize(
    ("loinc", "value", "unit", "key", "expected"),
    [
        ("8310-5", 101.3, "[degF]", "temperature_c", 38.5),
        ("8310-5", 311.15, "K", "temperature_c", 38.0),
        ("1988-5", 8.8, "mg/dL", "crp", 88.0),
        ("6690-2", 13.2, "10*9/L", "wbc", 13.2),
        ("6690-2", 13200, "/uL", "wbc", 13.2),
        ("8867-4", 104, "{beats}/min", "heart_rate", 104.0),
        ("8867-4", 2, "/s", "heart_rate", 120.0),
        ("59408-5", 0.91, "1", "spo2", 91.0),
        ("8480-6", 16, "kPa", "systolic_bp", 120.01),
        ("33762-6", 240, "ng/L", "nt_probnp", 240.0),
    ],
)
def test_values_are_converted_to_the_dictionarys_unit(loinc, value, unit, key, expected):
    findings, problems = mapping.map_observations([observation(loinc, value, unit)], RESPIRATORY)
    assert findings[key] == pytest.approx(expected, abs=0.01)
    assert "unit_refused" not in [problem.code for problem in problems]


def test_conversion_leaves_no_binary_noise():
    findings, _ = mapping.map_observations([observation("8310-5", 98.6, "[degF]")], RESPIRATORY)
    assert findings["temperature_c"] == 37.0  # not 37.00000000000006


@pytest.mark.parametrize(
    ("unit", "system", "message"),
    [
        ("mmol/L", synthetic.UCUM, "'mmol/L' cannot be converted to 'mg/L'"),
        ("/min", synthetic.UCUM, "'/min' cannot be converted to 'mg/L'"),
        ("Quennell", synthetic.UCUM, "the unit code is not a UCUM unit"),
        ("mg/L", "http://snomed.info/sct", "units are taken only in UCUM"),
        ("m g", synthetic.UCUM, "printable ASCII characters without spaces"),
        ("x" * 500, synthetic.UCUM, "printable ASCII characters without spaces"),
    ],
)
def test_an_incompatible_or_unknown_unit_is_refused_with_a_clear_message(unit, system, message):
    findings, problems = mapping.map_observations([observation("1988-5", 88, unit, system=system)], RESPIRATORY)
    assert "crp" not in findings
    refused = [problem for problem in problems if problem.code == "unit_refused"]
    assert len(refused) == 1
    assert refused[0].field == "findings.crp"
    assert refused[0].position == 0
    assert message in refused[0].message
    assert "Quennell" not in refused[0].message


def test_a_value_outside_the_hard_limits_is_left_out_and_one_outside_the_expected_range_kept():
    findings, problems = mapping.map_observations(
        [observation("8310-5", 98.6, "Cel"), observation("8867-4", 260, "/min")], RESPIRATORY
    )
    assert findings == {"heart_rate": 260.0}
    by_code = {problem.code: problem for problem in problems}
    assert by_code["outside_hard_limits"].field == "findings.temperature_c"
    assert by_code["outside_hard_limits"].position == 0
    assert "left out" in by_code["outside_hard_limits"].message
    assert by_code["outside_expected_range"].field == "findings.heart_rate"
    assert "98.6" not in str(problems)


def test_a_finding_the_model_uses_and_no_observation_gives_is_missing():
    findings, problems = mapping.map_observations([observation("8867-4", 80, "/min")], RESPIRATORY)
    assert findings == {"heart_rate": 80.0}
    missing = [problem.field for problem in problems if problem.code == "missing"]
    assert missing == [f"findings.{key}" for key in RESPIRATORY.model_findings if key != "heart_rate"]
    assert "LOINC 8310-5 (Body temperature)" in problems[0].message


def test_several_observations_of_one_finding_keep_the_latest():
    early = observation("8867-4", 120, "/min", effectiveDateTime="2025-11-02T09:00:00-05:00")
    late = observation("8867-4", 90, "/min", effectiveDateTime="2025-11-02T10:00:00-05:00")
    # Offsets compared as instants: 14:30 UTC is after 14:00 UTC, whatever the wall clock says.
    other_zone = observation("8867-4", 100, "/min", effectiveDateTime="2025-11-02T16:30:00+02:00")
    findings, problems = mapping.map_observations([late, early, other_zone], RESPIRATORY)
    assert findings["heart_rate"] == 90.0
    repeated = next(problem for problem in problems if problem.code == "repeated")
    assert repeated.position == 0
    assert repeated.message.startswith("3 Observations of Heart rate")


def test_an_observation_is_the_finding_of_its_first_code_the_dictionary_has():
    both = observation("0000-0", 80, "/min")
    both["code"]["coding"] += [{"system": mapping.LOINC, "code": "8867-4"}, {"system": mapping.LOINC, "code": "9279-1"}]
    findings, _problems = mapping.map_observations([both], RESPIRATORY)
    assert findings == {"heart_rate": 80.0}


def test_observations_of_one_finding_at_the_same_time_keep_the_one_given_last():
    at = {"effectiveDateTime": "2025-11-02T09:00:00Z"}
    first, last = observation("8867-4", 120, "/min", **at), observation("8867-4", 90, "/min", **at)
    findings, problems = mapping.map_observations([first, last], RESPIRATORY)
    assert findings["heart_rate"] == 90.0
    assert next(problem for problem in problems if problem.code == "repeated").position == 1
    findings, _problems = mapping.map_observations([observation("8867-4", 70, "/min"), first], RESPIRATORY)
    assert findings["heart_rate"] == 120.0  # a time beats none


def quantity(value=None, unit="/min", **extra):
    part = {"unit": unit, "system": synthetic.UCUM, "code": unit, **extra}
    if value is not None:
        part["value"] = value
    return {"valueQuantity": part}


@pytest.mark.parametrize(
    ("value_part", "code"),
    [
        (quantity(10**400), "invalid_value"),
        (quantity(1e308, "/s"), "unit_refused"),
        (quantity(), "invalid_value"),
        (quantity(30, comparator=">"), "invalid_value"),
        ({"valueString": "Rosalind"}, "invalid_value"),
        ({"dataAbsentReason": {"coding": [{"code": "not-performed"}]}}, "missing"),
    ],
)
def test_values_that_are_not_finite_measured_numbers_are_refused(value_part, code):
    resource = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": mapping.LOINC, "code": "8867-4"}]},
        **value_part,
    }
    findings, problems = mapping.map_observations([resource], RESPIRATORY)
    assert "heart_rate" not in findings
    assert ("findings.heart_rate", code) in [(problem.field, problem.code) for problem in problems]
    assert "Rosalind" not in str(problems)


def test_observations_entered_in_error_and_codes_outside_the_dictionary_are_not_used():
    void = observation("8867-4", 80, "/min", status="entered-in-error")
    other = observation("2093-3", 190, "mg/dL")  # cholesterol: not in the respiratory dictionary
    findings, problems = mapping.map_observations([void, other], RESPIRATORY)
    assert findings == {}
    assert {problem.code for problem in problems} == {"missing"}


# --- Conditions ------------------------------------------------------------------------------------


def test_an_icd10_condition_in_the_code_set_is_the_diagnosis_with_the_dictionarys_name():
    found = mapping.map_conditions(
        [condition((synthetic.ICD10_CM, "j189"), ("http://snomed.info/sct", "233604007"))], RESPIRATORY
    )
    assert found == ("J18.9", "Pneumonia, unspecified organism", [])


def test_conditions_in_snomed_only_refuted_or_entered_in_error_give_no_diagnosis():
    code, _, problems = mapping.map_conditions(
        [
            condition(("http://snomed.info/sct", "233604007")),
            condition((synthetic.ICD10_CM, "J18.9"), status="refuted"),
            condition((synthetic.ICD10_CM, "J45.909"), status="entered-in-error"),
        ],
        RESPIRATORY,
    )
    assert (code, problems) == ("", [])


def test_an_icd10_code_outside_the_code_set_is_a_problem():
    code, _, problems = mapping.map_conditions(
        [condition(("http://hl7.org/fhir/sid/icd-10", "E11.9")), condition((synthetic.ICD10_CM, "J06.9"))],
        RESPIRATORY,
    )
    assert code == "J06.9"
    assert [(problem.code, problem.position) for problem in problems] == [("unknown_diagnosis_code", 0)]


def test_two_diagnoses_are_ambiguous_unless_the_encounter_ranks_one_first():
    both = [condition((synthetic.ICD10_CM, "J18.9"), cid="c1"), condition((synthetic.ICD10_CM, "U07.1"), cid="c2")]
    code, _, problems = mapping.map_conditions(both, RESPIRATORY)
    assert code == ""
    assert [problem.code for problem in problems] == ["ambiguous_diagnosis"]
    code, _, problems = mapping.map_conditions(both, RESPIRATORY, ranked={1: 1, 0: 2})
    assert (code, problems) == ("U07.1", [])


# --- Encounter -------------------------------------------------------------------------------------


def test_an_encounter_maps_to_the_interchange_record_it_was_made_from():
    patient, encounter, observations, conditions = resources()
    mapped = mapping.map_encounter(
        patient=patient, encounter=encounter, observations=observations, conditions=conditions, definition=RESPIRATORY
    )
    record = mapped.record(source="st-mary", cohort="respiratory")
    assert record["patient"]["mrn"] == MRN
    assert record["encounter_date"] == "2025-11-02"
    assert record["findings"] == {key: float(value) for key, value in RECORD["findings"].items()}
    assert record["diagnosis"] == {"code": "J18.9", "label": "Pneumonia, unspecified organism"}
    assert mapped.problems == ()


def test_the_encounter_date_is_the_calendar_date_written_not_utcs():
    patient, encounter, _observations, _conditions = resources()
    encounter["period"] = {"start": "2025-11-02T23:30:00-05:00"}  # 04:30 UTC the next day
    mapped = mapping.map_encounter(
        patient=patient, encounter=encounter, observations=[], conditions=[], definition=RESPIRATORY
    )
    assert mapped.encounter_date is not None
    assert mapped.encounter_date.isoformat() == "2025-11-02"


def test_problem_messages_never_hold_an_identifier_of_the_patient():
    patient, encounter, observations, conditions = resources()
    observations = copy.deepcopy(observations)
    observations[0]["valueQuantity"]["code"] = "mmol/L"
    del patient["identifier"][1]["type"]
    mapped = mapping.map_encounter(
        patient=patient, encounter=encounter, observations=observations, conditions=conditions, definition=RESPIRATORY
    )
    assert mapped.problems
    text = json.dumps([problem.to_json() for problem in mapped.problems])
    for value in RECORD["patient"].values():
        assert value not in text
        for word in value.split():
            assert word not in text


@pytest.mark.parametrize(
    ("reference", "kind", "expected"),
    [
        ("urn:uuid:0f3c", "Patient", "0f3c"),
        ("Patient/abc", "Patient", "abc"),
        ("https://ehr.example.org/fhir/Patient/abc/_history/3", "Patient", "abc"),
        ("Group/abc", "Patient", None),
        ("", "Patient", None),
        (None, "Patient", None),
    ],
)
def test_references_resolve_to_the_id_they_point_at(reference, kind, expected):
    assert mapping.reference_id(reference, kind) == expected


# --- Units -----------------------------------------------------------------------------------------


def test_equal_units_are_not_parsed_and_the_value_is_unchanged():
    assert units.convert(0.1 + 0.2, "Quennell", "Quennell") == 0.1 + 0.2


def test_a_kept_conversion_is_the_one_pint_gives_and_keeps_the_sign_of_zero():
    first = units.convert(98.7, "[degF]", "Cel")
    assert units.convert(98.7, "[degF]", "Cel") == first == units._convert(98.7, "[degF]", "Cel")
    # 0.0 and -0.0 are one key of a cache, but their conversions differ in sign.
    assert math.copysign(1, units.convert(0.0, "mg/dL", "mg/L")) == 1
    assert math.copysign(1, units.convert(-0.0, "mg/dL", "mg/L")) == -1
    # A refusal is raised every time, never kept as an answer.
    for _ in range(2):
        with pytest.raises(units.UnitRefused):
            units.convert(5.0, "mmol/L", "mg/L")


@pytest.mark.parametrize("unit", ["{Maria_Khan}", "mg{Maria_Khan}", "10*3/uL{Maria_Khan}/{x}"])
def test_a_refused_unit_never_shows_its_annotation(unit):
    # A UCUM annotation ("{beats}/min") is free text the sender typed: it could be a name.
    with pytest.raises(units.UnitRefused) as refused:
        units.convert(5.0, unit, "Cel")
    assert "Maria" not in str(refused.value)
    assert "{...}" in str(refused.value)


def test_a_conversion_too_large_for_a_float_is_refused():
    with pytest.raises(units.UnitRefused, match="too large"):
        units.convert(1e308, "kg", "ug")


# --- The shipped dictionaries' LOINC codes -----------------------------------------------------------

# Checked by hand against LOINC (each code's long common name and its example UCUM unit); a change
# to a shipped dictionary's codes must change this table too.
RESPIRATORY_LOINC = {
    "temperature_c": ("8310-5", "Cel"),  # Body temperature
    "heart_rate": ("8867-4", "/min"),  # Heart rate
    "respiratory_rate": ("9279-1", "/min"),  # Respiratory rate
    "spo2": ("59408-5", "%"),  # Oxygen saturation in Arterial blood by Pulse oximetry
    "systolic_bp": ("8480-6", "mm[Hg]"),  # Systolic blood pressure
    "wbc": ("6690-2", "10*3/uL"),  # Leukocytes [#/volume] in Blood by Automated count
    "crp": ("1988-5", "mg/L"),  # C reactive protein [Mass/volume] in Serum or Plasma
    "nt_probnp": ("33762-6", "pg/mL"),  # Natriuretic peptide.B prohormone N-Terminal [Mass/volume] in Serum or Plasma
}


def test_the_respiratory_dictionary_carries_the_real_loinc_codes_and_ucum_units():
    assert {item.key: (item.loinc, item.unit) for item in RESPIRATORY.findings} == RESPIRATORY_LOINC
    for _key, (_loinc, unit) in RESPIRATORY_LOINC.items():
        units.check_unit(unit)  # every dictionary unit parses as UCUM


def test_the_breast_mass_findings_have_no_loinc_codes_and_so_cannot_come_from_fhir():
    # Fine-needle-aspirate nucleus measurements from digitised images (Wisconsin data set): LOINC
    # has no codes for them, and the dictionary says so by leaving them out rather than inventing any.
    definition = parse_definition(json.loads((DICTIONARIES / "breast-mass.json").read_text())["dictionary"])
    assert [item.loinc for item in definition.findings] == [None] * 30
    assert mapping.loinc_index(definition) == {}


def test_snomed_coded_conditions_give_the_dictionarys_symptoms_in_its_order():
    conditions = [
        condition(("http://snomed.info/sct", "386661006")),  # fever
        condition(("http://snomed.info/sct", "49727002")),  # cough
        condition(("http://snomed.info/sct", "49727002"), status="entered-in-error"),
        condition(("http://snomed.info/sct", "22298006")),  # myocardial infarction: not a symptom here
    ]
    codes = [code for item in conditions for code in mapping.condition_snomed_codes(item)]
    assert mapping.map_symptoms(codes, RESPIRATORY) == ["cough", "fever"]


@pytest.mark.parametrize("when", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-13:59"])
def test_a_time_at_the_calendars_edge_whose_utc_instant_overflows_is_read_not_a_crash(when):
    # fhir.resources and the plain reader both take it; its UTC instant is out of datetime's range.
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "effectiveDateTime": when,
        "valueQuantity": {"value": 88, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"},
    }
    [found] = mapping.measurements(observation)
    assert found.when == when
