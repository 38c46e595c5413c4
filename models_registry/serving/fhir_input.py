"""FHIR resources as a prediction record: a Patient and Observations -> findings, age and sex.

One reader for the two ways FHIR reaches predict: the CDS Hooks service's prefetch
(``cds_hooks.prefetch``) and a FHIR ``Parameters`` body sent to ``predict/`` (``parameters_record``).
The resources are read by the FHIR import's mapping (``cases.fhir.mapping``), so a Patient or an
Observation means the same everywhere: the age at today and the sex of the Patient, and each
Observation whose LOINC code the dictionary gives a finding, converted to the dictionary's unit.

Only the elements the mapping reads are validated and mapped (``PATIENT_ELEMENTS``,
``OBSERVATION_ELEMENTS``): the Patient's birth date and gender, never its names, identifiers,
addresses or telecom; an Observation's code, subject, time and value, never its narrative or notes.
The minimum necessary, and a third of fhir.resources' validation cost; in the plain shape record
systems write, read by ``cases.fhir.plain`` without fhir.resources at all (``validate_elements``).
The record handed on is the compact one (findings, age, sex), which holds no identifier.

A resource about another patient than the one named is refused (``wrong_patient``): a prediction
must never mix two patients' data. A resource fhir.resources refuses is ``invalid_fhir`` (the
caller's code), naming the element and never the value.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.utils import timezone

from cases.dictionary.definition import Definition
from cases.fhir import mapping, resources
from cases.quality import MAX_AGE_YEARS, age_at
from models_registry.serving.inputs import ALLOW_MISSING, SUBJECT_KEY

PATIENT_ELEMENTS = frozenset({"resourceType", "id", "birthDate", "gender"})
# The import's Observation elements (cases.fhir.resources.READ_ELEMENTS), with the subject in place of
# the encounter: a prediction's Observations belong to the patient in the request, not to a visit.
OBSERVATION_ELEMENTS = (resources.READ_ELEMENTS["Observation"] - {"encounter"}) | {"subject"}
# Problems of the mapping worth telling the clinician (a missing finding is listed as imputed by
# serving, an expected-range warning by the dictionary check).
SHOWN_PROBLEMS = frozenset({"unit_refused", "invalid_value", "outside_hard_limits", "invalid_patient"})
MAX_PARAMETERS = 500
# Observations read for one prediction (a Bundle's entries included): the prefetch asks one per
# finding (_count=1); a 10 MB body of 35,000 Observations not in the plain shape cost ~9 s of CPU.
MAX_OBSERVATIONS = 1000


class ResourceRefused(ValueError):
    def __init__(self, code: str, field_name: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.field = field_name
        self.message = message


def _only(resource: dict[str, Any], elements: frozenset[str]) -> dict[str, Any]:
    return {name: value for name, value in resource.items() if name in elements}


def compact_record(
    patient: tuple[str, Any] | None,
    observations: list[tuple[str, Any]],
    definition: Definition,
    *,
    patient_id: str,
    invalid: str = "invalid_fhir",
    today: dt.date | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """(findings, age and sex; the notes worth showing) of a Patient and Observations, each given
    as (where it was in the request, the resource). Raises ``ResourceRefused``."""
    notes: list[str] = []
    record: dict[str, Any] = {}
    if patient is not None:
        where, resource = patient
        if not isinstance(resource, dict) or resource.get("resourceType") != "Patient":
            raise ResourceRefused(invalid, where, "must be a Patient.")
        if resource.get("id") != patient_id:
            raise ResourceRefused("wrong_patient", where, "is not the patient named (its id differs).")
        try:
            identity, problems = mapping.map_patient(
                resources.validate_elements(_only(resource, PATIENT_ELEMENTS), "Patient")
            )
        except resources.ResourceInvalid as exc:
            raise ResourceRefused(invalid, f"{where}.{exc.path}".rstrip("."), exc.message) from None
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
    if len(observations) > MAX_OBSERVATIONS:
        raise ResourceRefused(invalid, observations[MAX_OBSERVATIONS][0], f"is beyond {MAX_OBSERVATIONS} Observations.")
    models = []
    for where, resource in observations:
        if not isinstance(resource, dict) or resource.get("resourceType") != "Observation":
            raise ResourceRefused(invalid, where, "must be an Observation.")
        subject = resource.get("subject")
        reference = subject.get("reference") if isinstance(subject, dict) else None
        if not isinstance(reference, str) or mapping.reference_id(reference, "Patient") != patient_id:
            raise ResourceRefused("wrong_patient", where, "is not about the patient named (its subject differs).")
        try:
            models.append(resources.validate_elements(_only(resource, OBSERVATION_ELEMENTS), "Observation"))
        except resources.ResourceInvalid as exc:
            raise ResourceRefused(invalid, f"{where}.{exc.path}".rstrip("."), exc.message) from None
    findings, problems = mapping.map_observations(models, definition)
    notes += [problem.message for problem in problems if problem.code in SHOWN_PROBLEMS]
    record["findings"] = findings
    return record, notes


def _refused(where: str, message: str) -> ResourceRefused:
    return ResourceRefused("invalid_parameters", where, message)


def parameters_record(body: Any, definition: Definition) -> dict[str, Any]:
    """The prediction record of a FHIR ``Parameters`` body: ``patient`` (a Patient, required: it is
    the subject), ``observation`` (an Observation or a Bundle of them; repeated as needed) and
    ``allow_missing`` (``valueBoolean``). Raises ``ResourceRefused``."""
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise _refused("resourceType", "A FHIR body for predict is a Parameters resource.")
    parameters = body.get("parameter")
    if not isinstance(parameters, list) or not parameters or len(parameters) > MAX_PARAMETERS:
        raise _refused("parameter", f"must be a list of 1 to {MAX_PARAMETERS} parameters.")
    patient: tuple[str, Any] | None = None
    observations: list[tuple[str, Any]] = []
    allow_missing = False
    for index, parameter in enumerate(parameters):
        where = f"parameter[{index}]"
        name = parameter.get("name") if isinstance(parameter, dict) else None
        if name == "patient" and patient is None:
            patient = (f"{where}.resource", parameter.get("resource"))
        elif name == "observation":
            resource = parameter.get("resource")
            if isinstance(resource, dict) and resource.get("resourceType") == "Bundle":
                entries = resource.get("entry") or []
                if not isinstance(entries, list):
                    raise _refused(f"{where}.resource.entry", "must be a list.")
                for position, entry in enumerate(entries):
                    item = entry.get("resource") if isinstance(entry, dict) else None
                    observations.append((f"{where}.resource.entry[{position}].resource", item))
            else:
                observations.append((f"{where}.resource", resource))
        elif name == ALLOW_MISSING and isinstance(parameter.get("valueBoolean"), bool):
            allow_missing = parameter["valueBoolean"]
        else:
            # The name is the sender's text: named by position, never echoed.
            raise _refused(where, "is not a parameter predict takes (patient once, observation, allow_missing).")
    if patient is None:
        raise _refused("parameter", 'needs a "patient" parameter: the Patient is the subject of the prediction.')
    patient_id = patient[1].get("id") if isinstance(patient[1], dict) else None
    if not isinstance(patient_id, str) or not mapping.reference_id(f"Patient/{patient_id}", "Patient"):
        raise _refused(patient[0], "must be a Patient with an id.")
    record, _notes = compact_record(
        patient, observations, definition, patient_id=patient_id, invalid="invalid_parameters"
    )
    return {**record, SUBJECT_KEY: f"Patient/{patient_id}", ALLOW_MISSING: allow_missing}
