"""What a service call's prefetched FHIR resources say, as a prediction record.

The resources are read by the FHIR mapping of the case import (``cases.fhir.mapping``), so a
Patient or an Observation means the same here as in an imported bundle: the age at today and the
sex of the Patient, and each Observation whose LOINC code the dictionary gives a finding,
converted to the dictionary's unit. Only the elements the mapping reads are taken
(``PATIENT_ELEMENTS``, ``OBSERVATION_ELEMENTS``): the Patient's birth date and gender, never its
names or identifiers, and the record handed to serving is the compact one (findings, age, sex).

The CDS Hooks rules:

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
from dataclasses import dataclass, field
from typing import Any

from django.utils import timezone

from cases.dictionary.definition import Definition, Finding
from cases.fhir import mapping, resources
from cases.quality import MAX_AGE_YEARS, age_at
from cds_hooks.services import OBSERVATION_PREFIX, PATIENT_KEY, Call
from models_registry.serving.inputs import ALLOW_MISSING, SUBJECT_KEY

# The elements the mapping reads (``cases.fhir.mapping``): only these are validated and mapped. The
# rest of a resource (a Patient's names, identifiers, addresses and telecom; an Observation's
# narrative, notes, performers) never enters a model here: the minimum necessary, and a third of
# the validation's cost.
PATIENT_ELEMENTS = ("resourceType", "id", "birthDate", "gender")
OBSERVATION_ELEMENTS = (
    "resourceType",
    "id",
    "status",
    "code",
    "subject",
    "effectiveDateTime",
    "effectiveInstant",
    "effectivePeriod",
    "issued",
    "valueQuantity",
    "valueInteger",
    "valueBoolean",
    "valueString",
    "valueCodeableConcept",
    "valueRange",
    "valueRatio",
    "valueSampledData",
    "dataAbsentReason",
    "component",
)

# Problems of the mapping that are worth a line on the card (a missing finding is listed as
# imputed by serving, an expected-range warning by the dictionary check).
SHOWN_PROBLEMS = frozenset({"unit_refused", "invalid_value", "outside_hard_limits", "invalid_patient"})


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


def _only(resource: dict[str, Any], elements: tuple[str, ...]) -> dict[str, Any]:
    return {name: value for name, value in resource.items() if name in elements}


def _about(resource: dict[str, Any], patient_id: str, where: str) -> None:
    subject = resource.get("subject")
    reference = subject.get("reference") if isinstance(subject, dict) else None
    if mapping.reference_id(reference, "Patient") != patient_id:
        raise PrefetchRefused(
            "wrong_patient", where, "is not about the patient of context.patientId (its subject differs)."
        )


def read_prefetch(call: Call, definition: Definition, *, client_id: int, today: dt.date | None = None) -> Read:
    """The prediction record of ``call``'s prefetch under ``definition``; raises ``PrefetchRefused``."""
    notes: list[str] = []
    record: dict[str, Any] = {
        ALLOW_MISSING: True,
        # A/B routing keeps one patient on one arm: the subject is the patient as this record
        # system names it (serving keeps only its HMAC).
        SUBJECT_KEY: f"cds-hooks:{client_id}:Patient/{call.patient_id}",
    }
    patient = call.prefetch.get(PATIENT_KEY)
    if patient is not None:
        if not isinstance(patient, dict) or patient.get("resourceType") != "Patient":
            raise PrefetchRefused("invalid_prefetch", f"prefetch.{PATIENT_KEY}", "must be a Patient or null.")
        if patient.get("id") != call.patient_id:
            raise PrefetchRefused(
                "wrong_patient", f"prefetch.{PATIENT_KEY}", "is not the patient of context.patientId (its id differs)."
            )
        try:
            identity, problems = mapping.map_patient(_only(patient, PATIENT_ELEMENTS))
        except resources.ResourceInvalid as exc:
            raise PrefetchRefused(
                "invalid_prefetch", f"prefetch.{PATIENT_KEY}.{exc.path}".rstrip("."), exc.message
            ) from None
        notes += [problem.message for problem in problems if problem.code in SHOWN_PROBLEMS]
        born = identity.get("birth_date")
        if born:
            age = age_at(dt.date.fromisoformat(born), today or timezone.localdate())
            if 0 <= age <= MAX_AGE_YEARS:
                record["age"] = age
            else:
                notes.append("The Patient's birth date gives an impossible age; it was left out.")
        if identity.get("sex"):
            record["sex"] = identity["sex"]
    observations: list[Any] = []
    for key, value in call.prefetch.items():
        if not key.startswith(OBSERVATION_PREFIX):
            continue  # a key we did not ask for: not read
        for position, resource in enumerate(_resources(value, key)):
            where = f"prefetch.{key}" if value.get("resourceType") != "Bundle" else f"prefetch.{key}.entry[{position}]"
            if resource.get("resourceType") != "Observation":
                raise PrefetchRefused("invalid_prefetch", where, "must be an Observation.")
            _about(resource, call.patient_id, where)
            try:
                observations.append(resources.validate(_only(resource, OBSERVATION_ELEMENTS), "Observation"))
            except resources.ResourceInvalid as exc:
                raise PrefetchRefused("invalid_prefetch", f"{where}.{exc.path}".rstrip("."), exc.message) from None
    findings, problems = mapping.map_observations(observations, definition)
    notes += [problem.message for problem in problems if problem.code in SHOWN_PROBLEMS]
    record["findings"] = findings
    return Read(record=record, notes=notes)
