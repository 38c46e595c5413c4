"""The plain prefetch reader (``cds_hooks.prefetch._plain_record``) against the full one
(``_full_record``: ``compact_record``, fhir.resources for anything not plain): whatever the plain
reader takes, the full reader takes too and reads the same record and notes; everything else the
plain reader leaves to the full one, refusals included."""

from __future__ import annotations

import copy
import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cds_hooks import prefetch as reader
from cds_hooks.services import Call
from tests.cases.test_fhir_plain import ODD_VALUES
from tests.cds_hooks.calls import definition, prefetch
from tests.json_paths import changed, dropped, leaves

pytestmark = pytest.mark.django_db

TODAY = dt.date(2026, 12, 7)
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"


def _call(patient_id: str, data: dict[str, Any]) -> Call:
    return Call("patient-view", "0b7e4d4e-3c47-4a43-a8a2-0c7f1b9f2a10", patient_id, "Practitioner/1", None, data)


def _outcome(read: Any, call: Call, meaning: Any) -> Any:
    try:
        return "read", read(call, meaning, TODAY)
    except reader.PrefetchRefused as refused:
        return "refused", refused.code, refused.field, refused.message


def _compare(call: Call, meaning: Any) -> bool:
    """True when the plain reader took the prefetch (and answered as the full reader), False when
    it left it to the full reader."""
    full = _outcome(reader._full_record, copy.deepcopy(call), meaning)
    try:
        plain = reader._plain_record(copy.deepcopy(call), meaning, TODAY)
    except reader.plain.NotPlain:
        return False
    assert full == ("read", plain), call.prefetch
    return True


def _base() -> tuple[str, dict[str, Any]]:
    """The benchmark's shape (a Patient, a searchset Bundle per model input, blood pressure as a
    panel with components), with one Observation given directly instead of in a Bundle."""
    patient_id, data = prefetch()
    data = json.loads(json.dumps(data))  # no object shared between resources, as in a parsed body
    key = next(key for key, value in data.items() if key.startswith("obs-") and value and value["entry"])
    data[key] = data[key]["entry"][0]["resource"]
    return patient_id, data


def _variants(data: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every element of the Patient, of two Observations (a panel and a quantity) and of their
    Bundles: dropped, joined by an unknown sibling, or replaced by each odd value."""
    panel = next(key for key, value in data.items() if "component" in str(value))
    single = next(
        key for key, value in data.items() if key.startswith("obs-") and value.get("resourceType") != "Bundle"
    )
    for key in ("patient", panel, single):
        for path in leaves(data[key], (key,)):
            yield dropped(data, path)
            if isinstance(path[-1], str):
                yield changed(data, (*path[:-1], f"{path[-1]}Brannigan"), 1)
            for value in ODD_VALUES:
                yield changed(data, path, value)
    yield {**data, "obs-extra": [data[single]]}  # a list: no resource, no Bundle


def test_the_benchmarks_prefetch_is_read_by_the_plain_reader_alone(monkeypatch):
    patient_id, data = prefetch()

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the full reader was asked")

    expected = reader._full_record(_call(patient_id, copy.deepcopy(data)), definition(), TODAY)
    monkeypatch.setattr(reader, "compact_record", refuse)
    read = reader.read_prefetch(_call(patient_id, data), definition(), client_id=3, today=TODAY)
    assert (read.record, read.notes) == (
        {**expected[0], "allow_missing": True, "subject_key": f"cds-hooks:3:Patient/{patient_id}"},
        expected[1],
    )
    assert read.record["findings"]
    assert read.record["age"] == 71


def test_what_the_plain_reader_takes_the_full_reader_reads_the_same():
    """Thousands of variants of a prefetch: the plain reader takes one only if the full reader
    reads the same record and notes from it; refusals (another patient, an invalid element, a
    malformed Bundle) are all the full reader's."""
    meaning = definition()
    patient_id, data = _base()
    taken = left = 0
    for variant in _variants(data):
        if _compare(_call(patient_id, variant), meaning):
            taken += 1
        else:
            left += 1
    assert taken > 150  # both sides exercised
    assert left > 1500


def test_of_several_values_of_a_finding_the_latest_is_read_as_the_full_reader_reads_it():
    patient_id, data = prefetch()
    key = "obs-heart_rate"
    entry = data[key]["entry"][0]
    later, earlier, undated = (copy.deepcopy(entry) for _ in range(3))
    later["resource"]["effectiveDateTime"] = "2026-12-01T10:00:00+01:00"  # 09:00 UTC
    earlier["resource"]["effectiveDateTime"] = "2026-12-01T04:30:00-04:00"  # 08:30 UTC
    del undated["resource"]["effectiveDateTime"]  # its issued time: 09:45 at -05:00, 14:45 UTC
    for resource, value in ((later, 91), (earlier, 92), (undated, 93)):
        resource["resource"]["valueQuantity"]["value"] = value
    meaning = definition()
    for entries, latest in (([later, earlier], 91), ([earlier, later], 91), ([undated, later, earlier], 93)):
        call = _call(patient_id, {**data, key: {**data[key], "entry": entries}})
        assert _compare(call, meaning)
        finding = key.removeprefix("obs-")
        assert reader._plain_record(call, meaning, TODAY)[0]["findings"][finding] == latest


def test_a_subject_seen_in_the_call_is_checked_again_when_it_has_more_than_its_reference():
    """The plain reader checks a subject reference once per call, but only a subject of the
    reference alone: any other element of a later one is checked (and refused) as the full reader
    does."""
    patient_id, data = _base()
    meaning = definition()
    later = [key for key, value in data.items() if key.startswith("obs-") and value][-1]
    taken = []
    for extra in ({"display": ""}, {"display": "Ada"}, {"type": "Patient"}, {"type": "a b"}, {"id": "x"}):
        variant = copy.deepcopy(data)
        variant[later]["entry"][0]["resource"]["subject"].update(extra)
        taken.append(_compare(_call(patient_id, variant), meaning))
    assert taken == [False, True, True, False, False]
    variant = copy.deepcopy(data)
    variant[later]["entry"][0]["resource"]["subject"]["display"] = ""
    refused = _outcome(reader._full_record, _call(patient_id, variant), meaning)
    assert refused[:3] == ("refused", "invalid_prefetch", f"prefetch.{later}.entry[0].subject.display")


def test_more_observations_than_read_for_one_prediction_are_the_full_readers_refusal():
    patient_id, data = prefetch()
    key = next(key for key, value in data.items() if key.startswith("obs-") and value and value["entry"])
    data[key]["entry"] *= 1001
    with pytest.raises(reader.plain.NotPlain):
        reader._plain_record(_call(patient_id, data), definition(), TODAY)
    with pytest.raises(reader.PrefetchRefused) as refused:
        reader.read_prefetch(_call(patient_id, data), definition(), client_id=1, today=TODAY)
    assert refused.value.field == f"prefetch.{key}.entry[1000]"


def _mostly(valid: list[Any], odd: list[Any]) -> st.SearchStrategy[Any]:
    """One of ``valid`` 24 times in 25, else one of ``odd``."""
    return st.randoms(use_true_random=True).flatmap(
        lambda chance: st.sampled_from(valid if chance.random() < 0.96 else odd)
    )


@st.composite
def _quantity(draw: st.DrawFn, finding: Any) -> dict[str, Any]:
    """A valueQuantity of ``finding``: mostly within its hard limits, in its unit."""
    low, high = finding.hard_limits.min, finding.hard_limits.max
    chance = draw(st.randoms(use_true_random=True))
    found = {
        "value": draw(
            st.floats(low, high) | st.integers(int(low) + 1, int(high) - 1)
            if chance.random() < 0.85
            else st.floats(allow_nan=False, allow_infinity=False, width=32)
            | st.sampled_from([True, "88", None, 10**120, 1e300])
        ),
        "system": draw(_mostly([UCUM], ["http://example.org/units", "", None])),
        "code": draw(_mostly([finding.unit or "1"], ["[degF]", "10*9/L", "kg", "", "a b", 7])),
    }
    if chance.random() < 0.3:
        found["unit"] = draw(_mostly(["mmHg", "Cel", "/min", "%"], ["", None]))
    if chance.random() < 0.05:
        found["comparator"] = draw(st.sampled_from([">", "<=", "", None]))
    for name in ("value", "system", "code"):
        if chance.random() < 0.03:
            del found[name]
    return found


def _concept(finding: Any) -> st.SearchStrategy[Any]:
    coding = st.fixed_dictionaries(
        {
            "system": _mostly([LOINC], ["http://snomed.info/sct", "", None]),
            "code": _mostly([finding.loinc], ["85354-9", "0000-0", "", "x y", 5]),
        },
        optional={"display": _mostly(["Heart rate", "tab\there"], [""]), "version": _mostly(["2.74"], [""])},
    )
    valid = st.fixed_dictionaries(
        {"coding": st.lists(coding, min_size=1, max_size=2)}, optional={"text": _mostly(["x"], [""])}
    )
    odd: st.SearchStrategy[Any] = st.sampled_from([{"text": "only text"}, {}, {"coding": []}, "8867-4", None])
    return st.randoms(use_true_random=True).flatmap(lambda chance: valid if chance.random() < 0.9 else odd)


@st.composite
def _observation(draw: st.DrawFn, patient_id: str, findings: list[Any]) -> dict[str, Any]:
    finding = draw(_mostly(findings[:2], findings))  # a few findings: several values of one
    found: dict[str, Any] = {
        "resourceType": draw(_mostly(["Observation"], ["Condition"])),
        "status": draw(_mostly(["final", "amended", "entered-in-error", "cancelled"], ["", 7])),
        "code": draw(_concept(finding)),
        "subject": draw(
            _mostly(
                [
                    {"reference": f"Patient/{patient_id}"},
                    {"reference": f"https://ehr.example.org/fhir/Patient/{patient_id}", "display": "Ada"},
                    {"reference": f"urn:uuid:{patient_id}"},
                ],
                [{"reference": "Patient/someone-else"}, {"reference": f"Patient/{patient_id}", "extension": []}, {}],
            )
        ),
        "effectiveDateTime": draw(
            _mostly(
                ["2026-12-01T09:30:00-05:00", "2026-12-01T10:30:00Z", "2026-11-30T23:30:00-05:00", "2026-12-01"],
                ["2026-12", "2026-02-30", 5],
            )
        ),
    }
    optional = {
        "id": _mostly(["o-1"], ["", "x" * 70]),
        "issued": _mostly(["2026-12-01T09:45:00.000-05:00", "2026-12-01T08:00:00+14:00"], ["2026-12-01"]),
        "valueQuantity": _quantity(finding),
        "component": st.lists(
            st.fixed_dictionaries({"code": _concept(finding)}, optional={"valueQuantity": _quantity(finding)}),
            min_size=1,
            max_size=2,
        ),
        "effectiveInstant": st.just("2026-12-01T09:30:00Z"),
        "valueInteger": st.sampled_from([88, True]),
        "dataAbsentReason": st.just({"text": "asked, unknown"}),
        "encounter": st.just({"reference": "Encounter/e-1"}),
        "note": st.just([{"text": "free text"}]),
    }
    chance = draw(st.randoms(use_true_random=True))
    for name, strategy in optional.items():
        if chance.random() < (0.7 if name == "valueQuantity" else 0.3 if name in ("id", "issued") else 0.04):
            found[name] = draw(strategy)
    for name in ("status", "code", "effectiveDateTime"):
        if chance.random() < 0.05:
            del found[name]
    return found


@st.composite
def _prefetch(draw: st.DrawFn, patient_id: str, findings: list[Any]) -> dict[str, Any]:
    patient: dict[str, Any] = {"resourceType": "Patient", "id": patient_id}
    chance = draw(st.randoms(use_true_random=True))
    for name, strategy in {
        "birthDate": _mostly(["1955-03-02"] * 8 + ["1890-01-01", "2027-01-01"], ["1955", "1955-02-30", 1955]),
        "gender": _mostly(["female", "male", "other", "unknown"], ["F", "", None]),
        "name": st.just([{"family": "Quinn"}]),
        "id": st.just("someone-else"),
        "resourceType": st.just("Person"),
    }.items():
        if chance.random() < (0.05 if name in ("id", "resourceType") else 0.8):
            patient[name] = draw(strategy)
    data: dict[str, Any] = {"patient": draw(_mostly([patient], [None]))}
    observation = _observation(patient_id, findings)
    keys = [f"obs-{finding.key}" for finding in findings] + ["obs-other"]
    for key in draw(st.lists(st.sampled_from(keys), min_size=1, max_size=4, unique=True)):
        roll = chance.random()
        if roll < 0.7:
            entries = []
            for _ in range(draw(st.integers(1, 2))):
                odd = chance.random() < 0.05
                entries.append(
                    draw(st.sampled_from([{"resource": {"resourceType": "OperationOutcome"}}, {}, "x"]))
                    if odd
                    else {"resource": draw(observation)}
                )
            data[key] = {"resourceType": "Bundle", "type": "searchset", "entry": entries}
        elif roll < 0.9:
            data[key] = draw(observation)
        else:
            data[key] = draw(
                st.sampled_from([None, {"resourceType": "Bundle"}, {"resourceType": "Bundle", "entry": {}}])
            )
    return data


_PATIENT_ID = "ehr-patient-1"


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_generated_prefetches_are_read_alike_by_both_readers(data):
    """Generated prefetches: repeated findings (the latest kept), void statuses, units converted or
    refused, impossible ages, other patients, values of every JSON type."""
    meaning = definition()
    inputs = [finding for finding in meaning.findings if finding.used_by_model and finding.loinc]
    generated = data.draw(_prefetch(_PATIENT_ID, inputs))
    _compare(_call(_PATIENT_ID, generated), meaning)
