"""Dictionary definitions: the JSON Schema, the checks it cannot make, and code check digits."""

from __future__ import annotations

import pytest

from cases.dictionary.definition import (
    DefinitionError,
    definition_sha256,
    loinc_check_digit_ok,
    parse_definition,
    snomed_check_digit_ok,
)
from tests.cases.dictionary_factories import small_definition


def test_a_valid_definition_parses_with_its_findings_in_order():
    parsed = parse_definition(small_definition())
    assert [item.key for item in parsed.findings] == ["heart_rate", "temperature_c", "smoker", "gcs_band"]
    assert parsed.model_findings == ("heart_rate", "temperature_c", "gcs_band")
    assert parsed.diagnosis_name("J18.9") == "Pneumonia, unspecified organism"
    assert parsed.uses_age
    assert not parsed.uses_sex
    heart_rate = parsed.finding("heart_rate")
    assert heart_rate is not None
    assert str(heart_rate.expected_range) == "40..180"


def _finding(index: int = 0, **changes):
    definition = small_definition()
    definition["findings"][index].update(changes)
    return definition


@pytest.mark.parametrize(
    ("definition", "path"),
    [
        (small_definition(findings="no"), "findings"),
        (_finding(key="Heart Rate"), "findings[0].key"),
        (_finding(value_type="text"), "findings[0].value_type"),
        (_finding(loinc="8867"), "findings[0].loinc"),
        (_finding(loinc="8867-5"), "findings[0].loinc"),  # wrong check digit
        (_finding(hard_limits={"min": 10, "max": 1}), "findings[0].hard_limits"),
        (_finding(expected_range={"min": 0, "max": 400}), "findings[0].expected_range.max"),
        (_finding(unit="mm Hg"), "findings[0].unit"),
        (_finding(2, unit="1"), "findings[2].unit"),  # boolean with a unit
        (_finding(3, values=[]), "findings[3].values"),
        (
            _finding(3, values=[{"code": 1, "display_name": "a"}, {"code": 1, "display_name": "b"}]),
            "findings[3].values[1]",
        ),
        (_finding(1, values=[{"code": 1, "display_name": "a"}]), "findings[1].values"),
        (_finding(2, hard_limits={"min": 0}), "findings[2]"),
        (small_definition(diagnoses=[]), "diagnoses"),
        (small_definition(diagnoses=[{"code": "zzz", "display_name": "x"}]), "diagnoses[0].code"),
        (
            small_definition(symptoms=[{"key": "cough", "display_name": "a", "snomed_ct": "49727003"}]),
            "symptoms[0].snomed_ct",
        ),
        (small_definition(demographics={"age": True}), "demographics"),
        (small_definition(extra=1), ""),
    ],
)
def test_a_bad_definition_is_refused_naming_where(definition, path):
    with pytest.raises(DefinitionError) as caught:
        parse_definition(definition)
    assert caught.value.path == path


def test_repeated_keys_and_codes_are_refused():
    definition = small_definition()
    definition["findings"].append(dict(definition["findings"][0]))
    with pytest.raises(DefinitionError, match="repeats the key 'heart_rate'"):
        parse_definition(definition)
    definition = small_definition()
    definition["diagnoses"].append({"code": "J18.9", "display_name": "again"})
    with pytest.raises(DefinitionError, match="repeats the code"):
        parse_definition(definition)


@pytest.mark.parametrize("code", ["8310-5", "8867-4", "9279-1", "59408-5", "6690-2", "1988-5", "33762-6", "8480-6"])
def test_loinc_check_digits_of_the_demo_codes(code):
    assert loinc_check_digit_ok(code)
    body, digit = code.split("-")
    assert not loinc_check_digit_ok(f"{body}-{(int(digit) + 1) % 10}")


@pytest.mark.parametrize("code", ["49727002", "386661006", "267036007", "84229001"])
def test_snomed_verhoeff_check(code):
    assert snomed_check_digit_ok(code)
    assert not snomed_check_digit_ok(code[:-1] + str((int(code[-1]) + 1) % 10))


def test_the_hash_ignores_key_order_only():
    definition = small_definition()
    reordered = dict(reversed(list(definition.items())))
    assert definition_sha256(definition) == definition_sha256(reordered)
    assert definition_sha256(definition) != definition_sha256(
        small_definition(demographics={"age": False, "sex": False})
    )
