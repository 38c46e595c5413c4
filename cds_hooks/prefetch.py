"""What a service call's prefetched FHIR resources say, as a prediction record.

The resources are read as a FHIR ``Parameters`` body to predict is
(``models_registry.serving.fhir_input.compact_record``: the FHIR import's mapping, only the
elements it reads, the Patient's birth date and gender and never its identifiers). The CDS Hooks
rules on top:

- a prefetch key the service asked for and the call lacks means the record system did not
  satisfy it: 412 (``prefetch_missing``, naming the keys), since the service never calls the
  record system's FHIR server itself;
- a key whose value is null means there is no such data: the finding is missing (imputed, or the
  call answered with a card saying what the model lacks);
- a resource about another patient than ``context.patientId`` is refused (400
  ``wrong_patient``): a card must never mix two patients' data;
- a resource fhir.resources refuses is 400 ``invalid_prefetch``, with the key and the element,
  never a value.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, replace
from typing import Any

from django.utils import timezone

from cases.dictionary.definition import Definition, Finding
from cases.fhir import mapping, plain
from cases.quality import MAX_AGE_YEARS, age_at
from cds_hooks.services import OBSERVATION_PREFIX, PATIENT_KEY, Call
from models_registry.serving.fhir_input import (
    MAX_OBSERVATIONS,
    OBSERVATION_ELEMENTS,
    SHOWN_PROBLEMS,
    ResourceRefused,
    compact_record,
)
from models_registry.serving.inputs import ALLOW_MISSING, SUBJECT_KEY


class PrefetchRefused(ValueError):
    def __init__(self, code: str, field_name: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.code = code
        self.field = field_name
        self.message = message
        self.extra = extra


@dataclass
class Read:
    """The record for serving, and the sentences the card shows about the data."""

    record: dict[str, Any]
    notes: list[str] = field(default_factory=list)


def required_keys(findings: list[Finding]) -> list[str]:
    return [PATIENT_KEY, *(f"{OBSERVATION_PREFIX}{finding.key}" for finding in findings)]


def _resources(value: Any, key: str) -> list[Any]:
    """The resources of one prefetch value: a resource, or a searchset Bundle's entries."""
    if value is None:
        return []
    if not isinstance(value, dict):
        raise PrefetchRefused("invalid_prefetch", f"prefetch.{key}", "must be a FHIR resource, a Bundle or null.")
    if value.get("resourceType") != "Bundle":
        return [value]
    entries = value.get("entry") or []
    if not isinstance(entries, list):
        raise PrefetchRefused("invalid_prefetch", f"prefetch.{key}.entry", "must be a list.")
    found = []
    for position, entry in enumerate(entries):
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict):
            raise PrefetchRefused("invalid_prefetch", f"prefetch.{key}.entry[{position}]", "has no resource.")
        if resource.get("resourceType") == "OperationOutcome":
            continue  # a search's own messages (search.mode "outcome"), not data
        found.append(resource)
    return found


def read_prefetch(call: Call, definition: Definition, *, client_id: int, today: dt.date | None = None) -> Read:
    """The prediction record of ``call``'s prefetch under ``definition``; raises ``PrefetchRefused``.

    A prefetch in the plain shape is read by ``_plain_record``; anything else (and every refusal)
    by ``_full_record``, which judges it as it always has."""
    try:
        record, notes = _plain_record(call, definition, today)
    except plain.NotPlain:
        record, notes = _full_record(call, definition, today)
    # A/B routing keeps one patient on one arm: the subject is the patient as this record system
    # names it (serving keeps only its HMAC).
    record.update({ALLOW_MISSING: True, SUBJECT_KEY: f"cds-hooks:{client_id}:Patient/{call.patient_id}"})
    return Read(record=record, notes=notes)


def _full_record(call: Call, definition: Definition, today: dt.date | None) -> tuple[dict[str, Any], list[str]]:
    """The record and notes of the prefetch by the FHIR Parameters body's reader (``compact_record``)."""
    patient = call.prefetch.get(PATIENT_KEY)
    observations: list[tuple[str, Any]] = []
    for key, value in call.prefetch.items():
        if not key.startswith(OBSERVATION_PREFIX):
            continue  # a key we did not ask for: not read
        bundle = isinstance(value, dict) and value.get("resourceType") == "Bundle"
        for position, resource in enumerate(_resources(value, key)):
            observations.append((f"prefetch.{key}.entry[{position}]" if bundle else f"prefetch.{key}", resource))
    try:
        return compact_record(
            (f"prefetch.{PATIENT_KEY}", patient) if patient is not None else None,
            observations,
            definition,
            patient_id=call.patient_id,
            invalid="invalid_prefetch",
            today=today,
        )
    except ResourceRefused as exc:
        raise PrefetchRefused(exc.code, exc.field, exc.message) from None


# --- The plain prefetch, read in one pass --------------------------------------------------------------
#
# ``compact_record`` copies each resource's read elements, reads them into ``cases.fhir.plain`` views
# (an object per nested element), then the mapping reads the views back; about 40 us a resource. Here
# the same elements of the shape record systems write (a Patient's birthDate and gender; an
# Observation's id, status, code, subject, effectiveDateTime, issued, valueQuantity and components of
# a code and a valueQuantity) are checked with ``plain``'s own checks of each datatype, element by
# element, and turned into the mapping's ``Measurement`` items directly; the mapping
# (``map_observations``: the dictionary's codes, units, limits) then runs as for the full reader.
# Anything else (another element the reader validates, a value not in the plain shape, a resource
# of another patient, a malformed Bundle) raises ``NotPlain`` and the full reader answers, refusals
# included. ``tests/cds_hooks/test_prefetch_plain.py`` checks both readers agree on thousands of
# variants.

_LOINC = mapping.LOINC
_UCUM = mapping.UCUM
_CODING = frozenset({"system", "version", "code", "display"})
_CONCEPT = frozenset({"coding", "text"})
_REFERENCE = frozenset({"reference", "type", "display"})
_QUANTITY = frozenset({"value", "comparator", "unit", "system", "code"})
_COMPONENT = frozenset({"code", "valueQuantity"})


def _loinc_codes(concept: Any) -> list[str]:
    """The LOINC codes of a plain CodeableConcept (``mapping._codes``), its Codings checked as
    ``plain`` checks them."""
    if type(concept) is not dict or not concept or not _CONCEPT.issuperset(concept):
        raise plain.NotPlain
    if "text" in concept:
        plain._string(concept["text"])
    if "coding" not in concept:
        return []
    codings = concept["coding"]
    if type(codings) is not list or not codings:
        raise plain.NotPlain
    codes = []
    for coding in codings:
        code = _loinc_code(coding)
        if code is not None:
            codes.append(code)
    return codes


# Codings checked already (their items -> the LOINC code they give, or None): the same few codes
# come in every call. Only Codings whose every value is a plain string are kept, so an entry is
# found again only by a Coding of the same names and the same strings.
_CODINGS: dict[tuple[tuple[str, Any], ...], str | None] = {}
_MAX_CODINGS = 4096


def _loinc_code(coding: Any) -> str | None:
    """The LOINC code of a plain Coding, or None; raises ``NotPlain``."""
    if type(coding) is not dict or not coding or not _CODING.issuperset(coding):
        raise plain.NotPlain
    key = tuple(coding.items())
    try:
        return _CODINGS[key]
    except KeyError:
        pass
    except TypeError:  # a list or an object as a value: no Coding's
        raise plain.NotPlain from None
    system = plain._uri(coding["system"]) if "system" in coding else None
    code = plain._code(coding["code"]) if "code" in coding else None
    if "version" in coding:
        plain._string(coding["version"])
    if "display" in coding:
        plain._string(coding["display"])
    found = code if system == _LOINC and code else None
    if len(_CODINGS) >= _MAX_CODINGS:
        _CODINGS.clear()
    _CODINGS[key] = found
    return found


def _reference(reference: Any) -> None:
    if type(reference) is not dict or not reference or not _REFERENCE.issuperset(reference):
        raise plain.NotPlain
    for key, value in reference.items():
        if key == "type":
            plain._uri(value)
        else:
            plain._string(value)


def _measurement(element: dict[str, Any], codes: list[str], position: int, when: str) -> mapping.Measurement:
    """``mapping._measurement`` of an Observation or component whose only value[x] is, if any, a
    plain valueQuantity."""
    if "valueQuantity" not in element:
        return mapping.Measurement(tuple(codes), position, absent=True, when=when)
    quantity = element["valueQuantity"]
    if type(quantity) is not dict or not quantity or not _QUANTITY.issuperset(quantity):
        raise plain.NotPlain
    value = _value(quantity["value"]) if "value" in quantity else None
    comparator = plain._code(quantity["comparator"]) if "comparator" in quantity else None
    unit_text = plain._string(quantity["unit"]) if "unit" in quantity else None
    system = plain._uri(quantity["system"]) if "system" in quantity else None
    code = plain._code(quantity["code"]) if "code" in quantity else None
    unit = code if code and system in (None, _UCUM) else None
    if unit is None and system is None:
        unit = unit_text
    return mapping.Measurement(
        tuple(codes),
        position,
        value=value,
        unit=unit,
        unit_system=system,
        comparator=comparator,
        wrong_type=value is None,
        when=when,
    )


def _value(value: Any) -> float:
    """``mapping._number(plain._decimal(value))``: the float a plain decimal maps to, without the
    ``Decimal`` between (a float's text reads back as the same float; an integer of at most 100
    digits converts to the nearest float either way)."""
    kind = type(value)
    if kind is float:
        if not plain._DECIMAL.fullmatch(str(value)):
            raise plain.NotPlain
        return value  # type: ignore[no-any-return]
    number = mapping._number(plain._decimal(value))
    if number is None:  # a Decimal beyond float's range (a stream reader's): the full reader's
        raise plain.NotPlain
    return number


class _Seen:
    """What one call's Observations share, checked once: their subject (``{"reference": ...}``)
    and their times."""

    __slots__ = ("issued", "references", "times")

    def __init__(self) -> None:
        self.references: set[str] = set()
        self.times: dict[str, Any] = {}
        self.issued: dict[str, Any] = {}


def _observation(
    resource: Any, position: int, patient_id: str, seen: _Seen
) -> tuple[list[mapping.Measurement], Any, Any]:
    """``mapping.measurements`` of a plain Observation of the patient, validated as
    ``compact_record`` validates it, each with an empty ``when``; and its effectiveDateTime and
    issued (``_with_times`` fills ``when`` in where it matters)."""
    if type(resource) is not dict or resource.get("resourceType") != "Observation":
        raise plain.NotPlain
    subject = resource.get("subject")
    reference = subject.get("reference") if type(subject) is dict else None
    if type(reference) is not str:
        raise plain.NotPlain  # the full reader refuses it: wrong_patient
    # A subject of the reference alone, seen already in this call: this patient's, a plain string.
    known = reference in seen.references and len(subject) == 1  # type: ignore[arg-type]
    if not known and mapping.reference_id(reference, "Patient") != patient_id:
        raise plain.NotPlain  # the full reader refuses it: wrong_patient
    status = codes = effective = issued = None
    components: list[Any] = []
    for key, value in resource.items():
        if key not in OBSERVATION_ELEMENTS or key == "resourceType" or key == "valueQuantity":
            continue  # not read; the valueQuantity is read below
        if key == "id":
            plain._id(value)
        elif key == "status":
            status = plain._code(value)
        elif key == "code":
            codes = _loinc_codes(value)
        elif key == "subject":
            if not known:
                _reference(value)
                if len(value) == 1:
                    seen.references.add(reference)
        elif key == "effectiveDateTime":
            effective = seen.times.get(value) if type(value) is str else None
            if effective is None:
                effective = seen.times[value] = plain._date_time(value)
        elif key == "issued":
            issued = seen.issued.get(value) if type(value) is str else None
            if issued is None:
                issued = seen.issued[value] = plain._instant(value)
        elif key == "component":
            if type(value) is not list or not value:
                raise plain.NotPlain
            components = value
        else:  # another value[x], effective[x] or dataAbsentReason: the full reader's
            raise plain.NotPlain
    if status is None or codes is None:
        raise plain.NotPlain
    measurement = _measurement(resource, codes, position, "")  # a valueQuantity is checked all the same
    found = [measurement] if codes else []
    for component in components:
        if type(component) is not dict or "code" not in component or not _COMPONENT.issuperset(component):
            raise plain.NotPlain
        component_codes = _loinc_codes(component["code"])
        measurement = _measurement(component, component_codes, position, "")
        if component_codes:
            found.append(measurement)
    return ([] if status in mapping.VOID_OBSERVATION else found), effective, issued


def _with_times(
    found: list[mapping.Measurement], times: list[tuple[Any, Any]], definition: Definition
) -> list[mapping.Measurement]:
    """``found`` with each ``when`` as ``mapping.measurements`` gives it, if the mapping compares
    them: only between several values of one finding (the latest is kept). The prefetch asks for
    one Observation per finding, so a time is seldom turned into text."""
    seen: set[str] = set()
    for measurement in found:
        for code in measurement.loinc:  # as map_observations groups them
            finding = definition.finding_by_loinc(code)
            if finding is not None:
                if finding.key in seen:
                    return [replace(item, when=_when(*times[item.position])) for item in found]
                seen.add(finding.key)
                break
    return found


def _when(effective: Any, issued: Any) -> str:
    when = mapping._instant(effective) if effective is not None else ""
    return when or mapping._instant(issued)


def _observations(value: Any) -> list[Any]:
    """The resources of one prefetch value in the shape ``_resources`` takes without a word."""
    if value is None:
        return []
    if type(value) is not dict:
        raise plain.NotPlain
    if value.get("resourceType") != "Bundle":
        return [value]
    entries = value.get("entry") or []
    if type(entries) is not list:
        raise plain.NotPlain
    found = []
    for entry in entries:
        resource = entry.get("resource") if type(entry) is dict else None
        if type(resource) is not dict:
            raise plain.NotPlain
        if resource.get("resourceType") != "OperationOutcome":
            found.append(resource)
    return found


def _plain_record(call: Call, definition: Definition, today: dt.date | None) -> tuple[dict[str, Any], list[str]]:
    """What ``_full_record`` answers for a plain prefetch; raises ``NotPlain`` for any other."""
    patient_id = call.patient_id
    notes: list[str] = []
    record: dict[str, Any] = {}
    patient = call.prefetch.get(PATIENT_KEY)
    if patient is not None:
        if type(patient) is not dict or patient.get("resourceType") != "Patient" or patient.get("id") != patient_id:
            raise plain.NotPlain
        plain._id(patient_id)
        born = plain._date(patient["birthDate"]) if "birthDate" in patient else None
        gender = patient.get("gender")
        if "gender" in patient and (type(gender) is not str or gender not in mapping.SEXES):
            raise plain.NotPlain  # the full reader notes an unknown gender, or refuses the value
        if born is not None:
            age = age_at(born, today or timezone.localdate())
            if 0 <= age <= MAX_AGE_YEARS:
                record["age"] = age
            else:
                notes.append("The Patient's birth date gives an impossible age; it was left out.")
        if gender:
            record["sex"] = gender
    found: list[mapping.Measurement] = []
    times: list[tuple[Any, Any]] = []
    seen = _Seen()
    for key, value in call.prefetch.items():
        if not key.startswith(OBSERVATION_PREFIX):
            continue
        for resource in _observations(value):
            if len(times) == MAX_OBSERVATIONS:
                raise plain.NotPlain
            measurements, effective, issued = _observation(resource, len(times), patient_id, seen)
            found += measurements
            times.append((effective, issued))
    findings, problems = mapping.map_observations(_with_times(found, times, definition), definition)
    notes += [problem.message for problem in problems if problem.code in SHOWN_PROBLEMS]
    record["findings"] = findings
    return record, notes
