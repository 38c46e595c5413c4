"""The plain-shape reader (cases.fhir.plain) against fhir.resources: what it takes, fhir.resources
takes too, and the mapping reads the same from both."""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from cases.fhir import mapping, plain, resources, synthetic
from tests.cases import fhir_exports
from tests.json_paths import changed, dropped, leaves


def _elements(resource: dict[str, Any]) -> dict[str, Any]:
    # The import's elements, and the subject predict's FHIR input reads of an Observation.
    read = resources.READ_ELEMENTS[resource["resourceType"]] | {"subject"}
    return {key: value for key, value in resource.items() if key in read}


def _mapped(model: Any, kind: str) -> Any:
    """What the import reads of a resource: the same from either reader means the same cases."""
    if kind == "Patient":
        return model.id, mapping.map_patient(model)
    if kind == "Encounter":
        return mapping.encounter_facts(model)
    if kind == "Observation":
        reference = model.encounter.reference if model.encounter else None
        return model.id, model.status, reference, mapping.measurements(model)
    reference = model.encounter.reference if model.encounter else None
    return model.id, reference, mapping.condition_codes(model), mapping.condition_snomed_codes(model)


def _used_resources() -> list[dict[str, Any]]:
    records = fhir_exports.records(patients=3, encounters_per_patient=2)
    found = [item for item in fhir_exports.synthea_resources(records) if item["resourceType"] in resources.USED_TYPES]
    # And the other shapes the mapping reads: a reference by type and id, ranks, a component,
    # a boolean, an integer, a missing value, dates without time, an instant, a period.
    patient_id = found[0]["id"]
    found += [
        {
            "resourceType": "Encounter",
            "id": "e-2",
            "status": "finished",
            "class": {"code": "AMB"},
            "subject": {"reference": f"Patient/{patient_id}"},
            "period": {"end": "2025-03-01"},
            "diagnosis": [{"condition": {"reference": "Condition/c-1"}, "rank": 1}],
        },
        {
            "resourceType": "Observation",
            "id": "o-1",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}], "text": "Heart rate"},
            "encounter": {"reference": "Encounter/e-2"},
            "effectiveInstant": "2025-03-01T10:00:00.123Z",
            "valueInteger": 88,
        },
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
            "encounter": {"reference": "Encounter/e-2"},
            "effectivePeriod": {"start": "2025-03-01", "end": "2025-03-01T11:00:00+14:00"},
            "component": [
                {"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]}, "valueBoolean": True},
                {
                    "code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]},
                    "dataAbsentReason": {"text": "x"},
                },
            ],
        },
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "1988-5"}]},
            "issued": "2025-03-01T10:00:00-05:00",
            "valueQuantity": {"value": 1.5e2, "comparator": ">", "unit": "mg/L"},
        },
        {
            "resourceType": "Condition",
            "id": "c-1",
            "subject": {"reference": f"Patient/{patient_id}"},
            "verificationStatus": {"coding": [{"code": "refuted"}]},
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "j189"}]},
        },
    ]
    return found


def test_every_resource_the_synthetic_exports_write_is_plain_and_maps_as_fhir_resources_reads_it():
    for resource in _used_resources():
        kind = resource["resourceType"]
        elements = _elements(resource)
        view = plain.read(copy.deepcopy(elements), kind)
        assert _mapped(view, kind) == _mapped(resources.validate(elements, kind), kind), resource


ODD_VALUES: tuple[Any, ...] = (
    None,
    "",
    " ",
    "two  spaces",
    " padded",
    "tab\there",
    "line\nbreak",
    "nbsp\u00a0here",
    "NUL\u0000",
    "lone\ud800surrogate",  # JSON's "\\ud800": matches \S, pydantic refuses it
    "\udfff",
    "9999-12-31T23:59:59-13:59",  # no UTC instant
    "x" * 70,
    7,
    -1,
    0,
    2**31,
    True,
    1.5,
    float("nan"),
    float("inf"),
    Decimal("1E+2"),
    10**120,
    [],
    {},
    ["a"],
    {"text": "a"},
    "2020",
    "2020-02",
    "2021-02-30",
    "2020-01-01",
    "2020-01-01T10:00:00",
    "2020-01-01T10:00Z",
    "2020-01-01T24:00:00Z",
    "2016-12-31T23:59:60Z",
    "2020-01-01T10:00:00.1234567Z",
    "2020-01-01T10:00:00+15:00",
    "2020-01-01 10:00:00Z",
)


def _variants() -> Iterator[dict[str, Any]]:
    for resource in _used_resources():
        elements = _elements(resource)
        for path in leaves(elements):
            if path == ("resourceType",):
                continue
            yield dropped(elements, path)
            yield changed(elements, (*path[:-1], f"{path[-1]}Brannigan"), 1) if isinstance(path[-1], str) else elements
            for value in ODD_VALUES:
                yield changed(elements, path, copy.deepcopy(value))
        # value[x] and effective[x] twice, a value beside dataAbsentReason
        if elements["resourceType"] == "Observation":
            yield {**elements, "valueString": "x", "valueBoolean": False}
            yield {**elements, "dataAbsentReason": {"text": "x"}}
            yield {**elements, "effectiveDateTime": "2020-01-01", "effectivePeriod": {"start": "2020-01-01"}}


def test_what_the_plain_reader_takes_fhir_resources_takes_and_maps_the_same():
    """Every element of every shape replaced by odd values, dropped, or joined by an unknown one:
    the plain reader takes a variant only if fhir.resources does, with the same mapping."""
    taken = refused = 0
    for variant in _variants():
        kind = variant["resourceType"]
        try:
            view = plain.read(copy.deepcopy(variant), kind)
        except plain.NotPlain:
            refused += 1
            continue
        except RecursionError:  # pragma: no cover - no variant nests deep
            raise
        taken += 1
        try:
            model = resources.validate(variant, kind)
        except resources.ResourceInvalid as invalid:
            pytest.fail(f"plain took what fhir.resources refuses ({invalid}): {variant}")
        assert _mapped(view, kind) == _mapped(model, kind), variant
    assert taken > 300  # both sides exercised
    assert refused > 3000


def test_the_import_validates_plain_resources_without_fhir_resources(monkeypatch):
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("fhir.resources was asked")

    monkeypatch.setattr(resources, "validate", refuse)
    for resource in _used_resources():
        view = resources.validate_read(resource, resource["resourceType"])
        assert view.get_resource_type() == resource["resourceType"]


def test_a_resource_not_in_the_plain_shape_is_judged_by_fhir_resources():
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "1988-5"}]},
        "valueQuantity": {"value": 1, "unit": "mg/L", "system": synthetic.UCUM, "code": "mg/L"},
    }
    partial = {**observation, "effectiveDateTime": "2025-03"}  # valid FHIR, not plain
    with pytest.raises(plain.NotPlain):
        plain.read(partial, "Observation")
    assert resources.validate_read(partial, "Observation").effectiveDateTime == "2025-03"
    with pytest.raises(resources.ResourceInvalid) as refused:
        resources.validate_read({**observation, "status": 7}, "Observation")
    assert refused.value.path == "status"


def test_views_are_read_only_and_answer_none_only_for_elements_their_type_defines():
    view = plain.read({"resourceType": "Patient", "birthDate": "1950-01-02"}, "Patient")
    assert view.birthDate == dt.date(1950, 1, 2)
    assert view.gender is None
    with pytest.raises(AttributeError):
        view.Brannigan  # noqa: B018
    with pytest.raises(AttributeError):
        view.gender = "female"


@pytest.mark.parametrize(
    ("kind", "element", "value", "path"),
    [
        ("Patient", "birthDate", 0, "birthDate"),  # pydantic's lax mode read it as 1970-01-01
        ("Patient", "birthDate", 86400.0, "birthDate"),
        ("Observation", "effectiveDateTime", 1_700_000_000, "effectiveDateTime"),
        ("Observation", "issued", 1_700_000_000, "issued"),
        ("Observation", "effectivePeriod", {"start": 0}, "effectivePeriod.start"),
        ("Encounter", "period", {"end": 0}, "period.end"),
        ("Observation", "valueBoolean", "yes", "valueBoolean"),  # lax mode: True
        ("Observation", "valueBoolean", 0, "valueBoolean"),
        ("Observation", "valueInteger", "88", "valueInteger"),
        ("Observation", "valueInteger", 88.0, "valueInteger"),
        ("Observation", "valueQuantity", {"value": "88"}, "valueQuantity.value"),
        ("Observation", "component", [{"code": {"text": "x"}, "valueBoolean": "on"}], "component[0].valueBoolean"),
    ],
)
def test_a_value_of_the_wrong_json_type_is_refused_not_coerced_by_lax_mode(kind, element, value, path):
    resource = next(item for item in _used_resources() if item["resourceType"] == kind)
    elements = {key: item for key, item in _elements(resource).items() if not key.startswith("value")}
    with pytest.raises(resources.ResourceInvalid) as refused:
        resources.validate_read({**elements, element: value}, kind)
    assert refused.value.path == path


def _two_passes(resource: dict[str, Any], kind: str) -> Any:
    """``resources.validate_read`` as it was before it read in one walk: the names checked, then
    the resource reduced to its read elements and read (by ``plain`` or fhir.resources)."""
    if not resources.element_names(kind).issuperset(resource):
        raise resources.ResourceInvalid("", "has an element FHIR R4 does not define there.")
    read = resources.READ_ELEMENTS[kind]
    return resources.validate_elements({key: value for key, value in resource.items() if key in read}, kind)


def _view_values(value: Any) -> Any:
    if isinstance(value, plain.Element):
        return (type(value).__name__, {key: _view_values(item) for key, item in vars(value).items()})
    if isinstance(value, list):
        return [_view_values(item) for item in value]
    return value


def _whole_variants() -> Iterator[dict[str, Any]]:
    """Whole resources (the elements the import does not read included) with every element
    dropped, replaced by odd values or joined by an unknown one, and elements the type defines
    but the import does not read added with odd values."""
    unread = {"text": {"status": "generated"}, "meta": {"versionId": "1"}, "extension": [], "_id": {"id": "x"}}
    for resource in _used_resources():
        for path in leaves(resource):
            if path == ("resourceType",):
                continue
            yield dropped(resource, path)
            if isinstance(path[-1], str):
                yield changed(resource, (*path[:-1], f"{path[-1]}Brannigan"), 1)
            for value in ODD_VALUES[::3]:
                yield changed(resource, path, copy.deepcopy(value))
        for name, value in unread.items():
            yield {**resource, name: value}
            yield {**resource, name: "odd"}
        if resource["resourceType"] == "Observation":  # defined, read by plain, not by the import
            yield {**resource, "subject": {"reference": 7}}
            yield {**resource, "subject": "Patient/1"}


def test_the_one_walk_read_takes_exactly_what_reducing_then_reading_took():
    """``validate_read`` reads a plain resource in one walk, passing over the elements it does
    not read: it takes a resource exactly when the old two passes took it as plain, with the same
    view; anything else goes the old way, with the same outcome."""
    taken = passed_on = 0
    for variant in _whole_variants():
        kind = variant["resourceType"]
        try:
            before: Any = _two_passes(copy.deepcopy(variant), kind)
        except resources.ResourceInvalid as invalid:
            before = ("refused", invalid.path, invalid.message)
        try:
            fast = resources._plain_reader(kind)(copy.deepcopy(variant))
        except plain.NotPlain:
            passed_on += 1
            assert not isinstance(before, plain.Element), variant
        else:
            taken += 1
            assert isinstance(before, plain.Element), variant
            assert _view_values(fast) == _view_values(before), variant
        try:
            after: Any = resources.validate_read(copy.deepcopy(variant), kind)
        except resources.ResourceInvalid as invalid:
            after = ("refused", invalid.path, invalid.message)
        if isinstance(before, tuple):
            assert after == before, variant
        else:
            assert _mapped(after, kind) == _mapped(before, kind), variant
    assert taken > 500
    assert passed_on > 1000
