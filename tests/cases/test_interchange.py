"""The interchange format: what parse_record takes, what it refuses (and names), and the content hash."""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import json
import math
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cases import interchange
from cases.interchange import CaseRecord, RecordError, parse_line, parse_record
from cases.models import Case


def valid(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "external_id": "enc-000123",
        "source": "st-marys",
        "cohort": "respiratory",
        "patient": {
            "mrn": "MRN-448812",
            "name": "Jane Q. Doe",
            "birth_date": "1957-03-14",
            "sex": "female",
            "zip": "02139",
            "phone": "+1 617 555 0100",
            "email": "jane@example.org",
            "address": "12 Elm St, Cambridge, MA",
            "ssn": "123-45-6789",
        },
        "encounter_date": "2026-05-02",
        "findings": {"temperature_c": 38.6, "heart_rate": 112, "spo2": 91, "wbc": 14.2},
        "symptoms": ["cough", "fever", "dyspnea"],
        "note": "Free-text clinical note.",
        "diagnosis": {"code": "J18.9", "label": "Pneumonia, unspecified organism"},
    }
    data.update(overrides)
    return data


def with_patient(**changes: Any) -> dict[str, Any]:
    data = valid()
    for key, value in changes.items():
        if value is _DROP:
            data["patient"].pop(key)
        else:
            data["patient"][key] = value
    return data


_DROP = object()


# --- Valid records -------------------------------------------------------------------------------


def test_a_record_of_the_design_parses_into_columns():
    record = parse_record(valid())

    assert record.source == "st-marys"
    assert record.external_id == "enc-000123"
    assert record.cohort == "respiratory"
    assert record.patient["mrn"] == "MRN-448812"
    assert record.encounter_date == dt.date(2026, 5, 2)
    assert record.findings == {"temperature_c": 38.6, "heart_rate": 112.0, "spo2": 91.0, "wbc": 14.2}
    assert all(type(value) is float for value in record.findings.values())
    assert record.symptoms == ["cough", "fever", "dyspnea"]
    assert (record.diagnosis_code, record.diagnosis_label) == ("J18.9", "Pneumonia, unspecified organism")
    assert record.extra == {}


def test_values_are_normalised():
    record = parse_record(
        valid(
            external_id="  enc-1  ",
            patient={"mrn": " MRN-1 ", "sex": "Female", "name": ""},
            symptoms=["Cough", "cough ", "FEVER"],
            diagnosis={"code": "j18.9", "label": " Pneumonia "},
            note="  Note.  ",
        )
    )
    assert record.external_id == "enc-1"
    assert record.patient == {"mrn": "MRN-1", "sex": "female"}  # empty values are dropped
    assert record.symptoms == ["cough", "fever"]
    assert (record.diagnosis_code, record.diagnosis_label) == ("J18.9", "Pneumonia")
    assert record.note == "Note."


def test_optional_parts_may_be_missing():
    data = valid()
    for key in ("findings", "symptoms", "note", "diagnosis"):
        del data[key]
    data["patient"] = {"mrn": "MRN-1"}
    record = parse_record(data)
    assert (record.findings, record.symptoms, record.note, record.diagnosis_code) == ({}, [], "", "")


def test_the_default_source_applies_only_when_the_record_has_none():
    data = valid()
    del data["source"]
    assert parse_record(data, default_source="general").source == "general"
    assert parse_record(valid(), default_source="general").source == "st-marys"


def test_parse_line_takes_text_and_bytes():
    line = json.dumps(valid())
    assert parse_line(line) == parse_line(line.encode()) == parse_record(valid())


def test_unknown_keys_are_kept_in_extra_and_unknown_patient_keys_in_patient():
    data = valid(billing={"account": "A-1", "codes": [1, 2.5, None, True]}, source_system="epic")
    data["patient"]["insurance_id"] = "INS-9"
    data["patient"]["bed"] = 17

    record = parse_record(data)

    assert record.extra == {"billing": {"account": "A-1", "codes": [1, 2.5, None, True]}, "source_system": "epic"}
    assert record.patient["insurance_id"] == "INS-9"
    assert record.patient["bed"] == 17
    assert record.to_json()["billing"] == {"account": "A-1", "codes": [1, 2.5, None, True]}


def test_a_record_survives_the_round_trip_through_json_lines():
    record = parse_record(valid(extra_key={"nested": ["ünïcode", 1]}))
    again = parse_line(json.dumps(record.to_json(), ensure_ascii=False))
    assert again == record
    assert again.content_hash() == record.content_hash()


# --- Structural errors ---------------------------------------------------------------------------

LONG = "x" * 300


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ([], ""),
        ("a case", ""),
        (None, ""),
        (valid(external_id=None), "external_id"),
        (valid(external_id=""), "external_id"),
        (valid(external_id=123), "external_id"),
        (valid(external_id="e" * 201), "external_id"),
        (valid(external_id="enc\x001"), "external_id"),
        (valid(source=None), "source"),
        (valid(source="st marys"), "source"),
        (valid(source=["st-marys"]), "source"),
        (valid(source="s" * 101), "source"),
        (valid(cohort=None), "cohort"),
        (valid(cohort=7), "cohort"),
        (valid(cohort="two words"), "cohort"),
        (valid(cohort="c" * 101), "cohort"),
        (valid(patient=None), "patient"),
        (valid(patient=["MRN-1"]), "patient"),
        (with_patient(mrn=_DROP), "patient.mrn"),
        (with_patient(mrn=""), "patient.mrn"),
        (with_patient(mrn="   "), "patient.mrn"),
        (with_patient(mrn=448812), "patient.mrn"),
        (with_patient(name=42), "patient.name"),
        (with_patient(name=LONG), "patient.name"),
        (with_patient(name="Jane\x00Doe"), "patient.name"),
        (with_patient(sex="f"), "patient.sex"),
        (with_patient(sex=True), "patient.sex"),
        (with_patient(birth_date="14/03/1957"), "patient.birth_date"),
        (with_patient(birth_date="1957-02-30"), "patient.birth_date"),
        (with_patient(birth_date="19570314"), "patient.birth_date"),
        (with_patient(birth_date="1957-W11-4"), "patient.birth_date"),
        (with_patient(birth_date=19570314), "patient.birth_date"),
        (with_patient(religion={"name": "x"}), "patient.religion"),
        (with_patient(tags=["a"]), "patient.tags"),
        (with_patient(**{"k" * 65: "x"}), "patient"),
        (with_patient(weight=math.nan), "patient.weight"),
        (with_patient(next_of_kin="N\x00K"), "patient.next_of_kin"),
        (valid(encounter_date=None), "encounter_date"),
        (valid(encounter_date=""), "encounter_date"),
        (valid(encounter_date="2026/05/02"), "encounter_date"),
        (valid(encounter_date="2026-13-01"), "encounter_date"),
        (valid(encounter_date="2026-5-2"), "encounter_date"),
        (valid(encounter_date="2026-05-02T10:00:00"), "encounter_date"),
        (valid(encounter_date=20260502), "encounter_date"),
        (valid(findings=[38.6]), "findings"),
        (valid(findings="38.6"), "findings"),
        (valid(findings={"temperature_c": "38.6"}), "findings[0]"),
        (valid(findings={"fever": True}), "findings[0]"),
        (valid(findings={"fever": False}), "findings[0]"),
        (valid(findings={"wbc": None}), "findings[0]"),
        (valid(findings={"wbc": [14.2]}), "findings[0]"),
        (valid(findings={"wbc": math.nan}), "findings[0]"),
        (valid(findings={"wbc": math.inf}), "findings[0]"),
        (valid(findings={"wbc": -math.inf}), "findings[0]"),
        (valid(findings={"wbc": 10**400}), "findings[0]"),
        (valid(findings={"": 1.0}), "findings"),
        (valid(findings={"k" * 65: 1.0}), "findings"),
        (valid(findings={"w\x00bc": 1.0}), "findings"),
        (valid(findings={f"f{i}": 1.0 for i in range(201)}), "findings"),
        (valid(symptoms="cough"), "symptoms"),
        (valid(symptoms=["cough", 1]), "symptoms[1]"),
        (valid(symptoms=["cough", ""]), "symptoms[1]"),
        (valid(symptoms=["s" * 101]), "symptoms[0]"),
        (valid(symptoms=["co\x00ugh"]), "symptoms[0]"),
        (valid(symptoms=[f"s{i}" for i in range(101)]), "symptoms"),
        (valid(note=5), "note"),
        (valid(note=["a"]), "note"),
        (valid(note="n" * 50_001), "note"),
        (valid(note="before\x00after"), "note"),
        (valid(diagnosis="J18.9"), "diagnosis"),
        (valid(diagnosis={"code": 189}), "diagnosis.code"),
        (valid(diagnosis={"code": "J" * 21}), "diagnosis.code"),
        (valid(diagnosis={"code": "J18.9", "label": LONG}), "diagnosis.label"),
        (valid(custom=math.nan), "custom"),
        (valid(custom={"inner": [1, math.inf]}), "custom.inner[1]"),
        (valid(custom={"inner": "a\x00b"}), "custom.inner"),
        (valid(custom={"": 1}), "custom"),
        (valid(**{"k" * 65: 1}), "extra"),
    ],
)
def test_a_structural_error_is_a_record_error_naming_the_field(data, field):
    with pytest.raises(RecordError) as caught:
        parse_record(data)
    assert caught.value.field == field
    assert caught.value.message
    assert str(caught.value).startswith(f"{field}: " if field else caught.value.message)


def test_unknown_keys_nested_too_deep_are_refused():
    deep: Any = "bottom"
    for _ in range(interchange.MAX_EXTRA_DEPTH + 2):
        deep = {"d": deep}
    with pytest.raises(RecordError) as caught:
        parse_record(valid(custom=deep))
    assert caught.value.field.startswith("custom.d.d")


def test_text_with_a_lone_surrogate_is_refused():
    # Valid JSON, but no database can store it as UTF-8.
    line = json.dumps(valid()).replace('"Free-text clinical note."', '"bad \\ud800 text"')
    with pytest.raises(RecordError) as caught:
        parse_line(line)
    assert caught.value.field == "note"


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400", "1" + "0" * 400])
def test_non_finite_numbers_in_json_lines_are_refused(literal):
    line = json.dumps(valid(findings={"wbc": 1.0})).replace('"wbc": 1.0', f'"wbc": {literal}')
    with pytest.raises(RecordError) as caught:
        parse_line(line)
    assert caught.value.field == "findings[0]"


@pytest.mark.parametrize(
    "line",
    [
        "",
        "{",
        "{'single': 'quotes'}",
        '{"a": 1} trailing',
        b"\xff\xfe not utf-8",
        "[" * 100_000,
        '{"a": ' * 50_000,
        "1" * 5000,  # longer than Python's integer-string limit
    ],
)
def test_a_line_that_is_not_json_is_a_record_error(line):
    with pytest.raises(RecordError) as caught:
        parse_line(line)
    assert caught.value.field == ""


def test_error_messages_do_not_repeat_patient_values():
    cases = [
        with_patient(birth_date="31.12.1999-Jane-Doe"),
        with_patient(sex="Jane Doe"),
        with_patient(name=["Jane Doe"]),
        with_patient(mrn=123456789),
    ]
    for data in cases:
        with pytest.raises(RecordError) as caught:
            parse_record(data)
        assert "Jane" not in str(caught.value)
        assert "123456789" not in str(caught.value)


# --- Content hash --------------------------------------------------------------------------------


def shuffled(value: Any, rng: random.Random) -> Any:
    """The same JSON value with every object's keys in another order."""
    if isinstance(value, dict):
        items = list(value.items())
        rng.shuffle(items)
        return {key: shuffled(item, rng) for key, item in items}
    if isinstance(value, list):
        return [shuffled(item, rng) for item in value]
    return value


def test_the_content_hash_is_stable():
    assert parse_record(valid()).content_hash() == parse_record(copy.deepcopy(valid())).content_hash()
    assert len(parse_record(valid()).content_hash()) == 64


@pytest.mark.parametrize("seed", range(5))
def test_the_content_hash_does_not_depend_on_key_order(seed):
    data = valid(custom={"b": 1, "a": {"y": 2, "x": 3}})
    assert parse_record(shuffled(data, random.Random(seed))).content_hash() == parse_record(data).content_hash()


def test_the_content_hash_ignores_what_parsing_normalises():
    loose = valid(symptoms=["Cough", "FEVER", "dyspnea", "cough"], note="  Free-text clinical note. ")
    loose["findings"]["heart_rate"] = 112.0
    assert parse_record(loose).content_hash() == parse_record(valid()).content_hash()


@pytest.mark.parametrize(
    "change",
    [
        {"note": "Another note."},
        {"symptoms": ["cough"]},
        {"findings": {"temperature_c": 38.7, "heart_rate": 112, "spo2": 91, "wbc": 14.2}},
        {"diagnosis": {"code": "J20.9", "label": "Pneumonia, unspecified organism"}},
        {"encounter_date": "2026-05-03"},
        {"cohort": "other"},
        {"custom": 1},
    ],
)
def test_the_content_hash_changes_with_the_content(change):
    assert parse_record(valid(**change)).content_hash() != parse_record(valid()).content_hash()


def test_the_content_hash_changes_with_the_patient_block():
    assert parse_record(with_patient(phone="617-555-0101")).content_hash() != parse_record(valid()).content_hash()


# --- Arbitrary input -----------------------------------------------------------------------------

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    # What json.loads accepts but a database cannot store, often enough to be found.
    st.sampled_from([math.nan, math.inf, -math.inf, 10**400, "\x00", "a\x00b", "2026-05-02"]),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=20,
)
KEYS = sorted(interchange.KNOWN_KEYS)
PATIENT_KEYS = sorted(interchange.PATIENT_KEYS)


def assert_storable(record: CaseRecord) -> None:
    """What parse_record accepts can be hashed and stored as strict JSON (no NaN, valid UTF-8)."""
    record.content_hash()
    text = json.dumps(record.to_json(), allow_nan=False, ensure_ascii=False)
    text.encode("utf-8")
    assert "\\u0000" not in text  # PostgreSQL's jsonb refuses NUL characters


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_parse_record_raises_only_record_errors_for_any_json_value(value):
    with contextlib.suppress(RecordError):
        assert_storable(parse_record(value))


@settings(max_examples=500, deadline=None)
@given(
    key=st.sampled_from([*KEYS, *(f"patient.{key}" for key in PATIENT_KEYS), "extra_key", "patient.other_key"]),
    value=json_values,
)
def test_a_valid_record_with_any_part_replaced_parses_or_raises_a_record_error(key, value):
    data = valid()
    if key.startswith("patient."):
        data["patient"][key.removeprefix("patient.")] = value
    else:
        data[key] = value
    with contextlib.suppress(RecordError):
        assert_storable(parse_record(data))


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=200), st.binary(max_size=200)))
def test_parse_line_raises_only_record_errors_for_any_text(line):
    with contextlib.suppress(RecordError):
        assert_storable(parse_line(line))


@pytest.mark.django_db
def test_an_accepted_record_with_unknown_keys_is_stored_and_read_back_unchanged(clinician):
    data = valid(billing={"big": 10**30, "nested": {"ümlaut": ["x", 1.5, None, True]}}, tags=[])
    data["patient"]["bed"] = 17
    record = parse_record(data)

    case = Case.submit(record, by=clinician)

    stored = Case.objects.get(pk=case.pk).to_record()
    assert stored == record
    assert stored.content_hash() == case.record_hash


def test_a_findings_value_of_the_wrong_type_is_named_by_position_never_by_its_key():
    # The key may itself be an identifier, and no dictionary has said yet which keys are known.
    record = valid(findings={"heart_rate": 90, "doe_jane_mrn448812": "high"})
    with pytest.raises(RecordError) as caught:
        parse_record(record)
    assert caught.value.field == "findings[1]"
    assert "doe" not in str(caught.value).lower()
    assert "448812" not in f"{caught.value.field} {caught.value.message}"
