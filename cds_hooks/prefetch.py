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
from dataclasses import dataclass, field
from typing import Any

from cases.dictionary.definition import Definition, Finding
from cds_hooks.services import OBSERVATION_PREFIX, PATIENT_KEY, Call
from models_registry.serving.fhir_input import ResourceRefused, compact_record
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
    """The prediction record of ``call``'s prefetch under ``definition``; raises ``PrefetchRefused``."""
    patient = call.prefetch.get(PATIENT_KEY)
    observations: list[tuple[str, Any]] = []
    for key, value in call.prefetch.items():
        if not key.startswith(OBSERVATION_PREFIX):
            continue  # a key we did not ask for: not read
        bundle = isinstance(value, dict) and value.get("resourceType") == "Bundle"
        for position, resource in enumerate(_resources(value, key)):
            observations.append((f"prefetch.{key}.entry[{position}]" if bundle else f"prefetch.{key}", resource))
    try:
        record, notes = compact_record(
            (f"prefetch.{PATIENT_KEY}", patient) if patient is not None else None,
            observations,
            definition,
            patient_id=call.patient_id,
            invalid="invalid_prefetch",
            today=today,
        )
    except ResourceRefused as exc:
        raise PrefetchRefused(exc.code, exc.field, exc.message) from None
    # A/B routing keeps one patient on one arm: the subject is the patient as this record system
    # names it (serving keeps only its HMAC).
    record.update({ALLOW_MISSING: True, SUBJECT_KEY: f"cds-hooks:{client_id}:Patient/{call.patient_id}"})
    return Read(record=record, notes=notes)
