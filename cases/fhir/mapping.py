"""From FHIR R4 resources to the case interchange record: pure functions, no database.

One mapping for the FHIR import (``cases.fhir.importing``) and the CDS Hooks service, so a
Patient, an Observation or a Condition means the same thing wherever it arrives:

- **Patient** -> the record's ``patient``: the MRN from the identifier whose type is ``MR``
  (HL7 v2 table 0203), the SSN from type ``SS``, the name, birth date, sex (``gender``), address and
  ZIP, phone and email. These are the identifiers de-identification drops and scrubs from notes.
- **Observation** with a LOINC code that the cohort's dictionary gives a finding -> that finding,
  converted from its UCUM unit to the dictionary's (``cases.fhir.units``); components count too
  (blood pressure comes as a panel with systolic and diastolic components).
- **Condition** coded in ICD-10 (or ICD-10-CM) -> the diagnosis, when its code is in the cohort's
  code set; a Condition coded in SNOMED CT with the code of one of the dictionary's symptoms -> that
  symptom (Synthea writes symptoms so).

Every function answers what it could map and a list of problems (``Issue``, the dictionary
check's own type: code, field, message, and the position of the resource in the list it was
given). Messages name findings, units and codes, never a value or an identifier of the patient.
Problem codes: ``missing`` (no usable value, or no MRN), ``unit_refused``, ``invalid_value``,
``outside_hard_limits`` (the finding is left out), ``outside_expected_range`` (kept, as the
quality score does), ``repeated`` (several values: the latest is kept), ``unknown_diagnosis_code``
and ``ambiguous_diagnosis`` (left without a diagnosis), ``invalid_patient`` (an element left out).
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from cases.dictionary.definition import Definition, Finding
from cases.dictionary.units import print_unit
from cases.dictionary.validation import Issue, check_finding_value
from cases.fhir import resources, units

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
ICD10_SYSTEMS = frozenset({"http://hl7.org/fhir/sid/icd-10-cm", "http://hl7.org/fhir/sid/icd-10"})
IDENTIFIER_TYPES = "http://terminology.hl7.org/CodeSystem/v2-0203"
SEXES = frozenset({"female", "male", "other", "unknown"})
# Statuses that say the resource is not a fact about the patient.
VOID_OBSERVATION = frozenset({"entered-in-error", "cancelled"})
VOID_ENCOUNTER = frozenset({"entered-in-error", "cancelled"})
VOID_CONDITION = frozenset({"entered-in-error", "refuted"})
_ICD10 = re.compile(r"[A-Z][0-9][0-9A-Z](\.?[0-9A-Z]{1,4})?")
_REFERENCE = re.compile(r"(?:^|/)(?P<type>[A-Za-z]+)/(?P<id>[A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?$")


# --- Small readers ---------------------------------------------------------------------------------


def reference_id(reference: str | None, resource_type: str) -> str | None:
    """The id a reference points at: ``Patient/abc``, ``https://host/fhir/Patient/abc`` (a version
    ``/_history/2`` dropped) and ``urn:uuid:abc`` (Bundles refer to their entries' fullUrl so) are all
    ``abc``. None when it points at another type or is not a reference this module reads."""
    if not reference:
        return None
    if reference.startswith("urn:uuid:"):
        return reference.removeprefix("urn:uuid:") or None
    match = _REFERENCE.search(reference)
    if match is None or match["type"] != resource_type:
        return None
    return match["id"]


def _codes(concept: Any, systems: Iterable[str]) -> list[str]:
    wanted = systems if type(systems) is frozenset else frozenset(systems)
    return [
        coding.code
        for coding in (getattr(concept, "coding", None) or ())
        if coding.system in wanted and isinstance(coding.code, str) and coding.code
    ]


_LOINC_SYSTEMS = frozenset((LOINC,))


def _number(value: Any) -> float | None:
    """A FHIR decimal or integer as a finite float; None for anything else (``1e400`` included)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        return None
    try:
        number = float(value)
    except (OverflowError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _instant(value: Any) -> str:
    """A sortable text of a date or dateTime (for "the latest"), or "" when there is none."""
    if isinstance(value, dt.datetime):
        try:
            return value.astimezone(dt.UTC).isoformat() if value.tzinfo else value.isoformat()
        except OverflowError:  # 0001-01-01T00:00:00+14:00 or 9999-12-31T23:59:59-13:59 has no UTC instant
            return value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value) if value else ""


def _full_date(value: Any) -> dt.date | None:
    """A FHIR date or dateTime as the calendar date written (local to its offset); None when it
    is missing or only a year or a month."""
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return None


def normalise_icd10(code: str) -> str | None:
    """``j189`` and ``J18.9`` are ``J18.9``; None when it is not shaped like an ICD-10 code."""
    text = code.strip().upper()
    if not _ICD10.fullmatch(text):
        return None
    if "." not in text and len(text) > 3:
        text = f"{text[:3]}.{text[3:]}"
    return text


# --- Patient ---------------------------------------------------------------------------------------


def _identifier_type(identifier: Any) -> set[str]:
    return set(_codes(identifier.type, (IDENTIFIER_TYPES,)))


def _name(patient: Any) -> str:
    names = patient.name or ()
    chosen = next((name for name in names if name.use == "official"), names[0] if names else None)
    if chosen is None:
        return ""
    if chosen.text:
        return " ".join(chosen.text.split())
    parts = [*(chosen.given or ()), chosen.family or ""]
    return " ".join(part.strip() for part in parts if part and part.strip())


def _address(patient: Any) -> tuple[str, str]:
    """(street address with city and state, postal code) of the home address, else the first."""
    addresses = [item for item in patient.address or () if item.use != "old"]
    if not addresses:
        return "", ""
    chosen = next((item for item in addresses if item.use == "home"), addresses[0])
    if chosen.text:
        street = " ".join(chosen.text.split())
    else:
        parts = [*(chosen.line or ()), chosen.city or "", chosen.state or ""]
        street = ", ".join(part.strip() for part in parts if part and part.strip())
    return street, (chosen.postalCode or "").strip()


def _telecom(patient: Any, system: str) -> str:
    for point in patient.telecom or ():
        if point.system == system and point.value and point.use != "old":
            return str(point.value).strip()
    return ""


def map_patient(patient: Any) -> tuple[dict[str, Any], list[Issue]]:
    """The interchange ``patient`` object of a Patient (decoded JSON or a validated model).

    Raises ``resources.ResourceInvalid`` for a resource fhir.resources refuses. A missing MRN is a
    ``missing`` problem (the interchange format requires one); a partial birth date (a year) or an
    unknown gender is left out with a problem.
    """
    model = resources.validate(patient, "Patient")
    problems: list[Issue] = []
    out: dict[str, Any] = {}
    for identifier in model.identifier or ():
        kinds = _identifier_type(identifier)
        value = (identifier.value or "").strip()
        if not value:
            continue
        if "MR" in kinds and "mrn" not in out:
            out["mrn"] = value
        elif "SS" in kinds and "ssn" not in out:
            out["ssn"] = value
    if "mrn" not in out:
        problems.append(
            Issue(
                "missing",
                "patient.mrn",
                "The Patient has no identifier of type MR (medical record number, HL7 v2 table 0203).",
            )
        )
    name = _name(model)
    if name:
        out["name"] = name
    born = _full_date(model.birthDate)
    if born is not None:
        out["birth_date"] = born.isoformat()
    elif model.birthDate:
        problems.append(
            Issue("invalid_patient", "patient.birth_date", "The birth date is not a full date; it was left out.")
        )
    if model.gender:
        if model.gender in SEXES:
            out["sex"] = model.gender
        else:
            problems.append(
                Issue("invalid_patient", "patient.sex", f"gender must be one of {', '.join(sorted(SEXES))}.")
            )
    street, postal_code = _address(model)
    if street:
        out["address"] = street
    if postal_code:
        out["zip"] = postal_code
    for system, key in (("phone", "phone"), ("email", "email")):
        value = _telecom(model, system)
        if value:
            out[key] = value
    return out, problems


# --- Observations ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Measurement:
    """One LOINC-coded value of an Observation (its own, or a component's), as read from FHIR."""

    loinc: tuple[str, ...]
    position: int  # of the Observation in the list the caller gave
    value: float | None = None
    unit: str | None = None  # the UCUM code, or the unit text when no system says otherwise
    unit_system: str | None = None
    comparator: str | None = None
    absent: bool = False  # dataAbsentReason: the record system says there is no value
    wrong_type: bool = False  # a value, but not a number (a string, a CodeableConcept, ...)
    when: str = ""  # effective time, sortable, for "the latest"


def _measurement(element: Any, codes: list[str], position: int, when: str) -> Measurement:
    quantity = getattr(element, "valueQuantity", None)
    if quantity is not None:
        unit = quantity.code if quantity.code and quantity.system in (None, UCUM) else None
        if unit is None and quantity.system is None:
            unit = quantity.unit  # no system: the unit text is all there is (often UCUM anyway)
        return Measurement(
            tuple(codes),
            position,
            value=_number(quantity.value),
            unit=unit,
            unit_system=quantity.system,
            comparator=quantity.comparator,
            wrong_type=quantity.value is None,
            when=when,
        )
    integer = getattr(element, "valueInteger", None)
    if integer is not None:
        return Measurement(tuple(codes), position, value=_number(integer), when=when)
    boolean = getattr(element, "valueBoolean", None)
    if boolean is not None:
        return Measurement(tuple(codes), position, value=1.0 if boolean else 0.0, unit="1", when=when)
    if getattr(element, "dataAbsentReason", None) is not None:
        return Measurement(tuple(codes), position, absent=True, when=when)
    has_value = any(
        getattr(element, name, None) is not None
        for name in ("valueString", "valueCodeableConcept", "valueRange", "valueRatio", "valueSampledData")
    )
    return Measurement(tuple(codes), position, wrong_type=has_value, absent=not has_value, when=when)


def measurements(observation: Any, position: int = 0) -> list[Measurement]:
    """The LOINC-coded values of one Observation (decoded JSON or a validated model): its own and
    its components'. None for an Observation entered in error or cancelled.

    Raises ``resources.ResourceInvalid`` for a resource fhir.resources refuses.
    """
    model = resources.validate(observation, "Observation")
    if model.status in VOID_OBSERVATION:
        return []
    period = model.effectivePeriod
    when = _instant(model.effectiveDateTime or model.effectiveInstant or (period.start if period else None))
    when = when or _instant(model.issued)
    found: list[Measurement] = []
    codes = _codes(model.code, _LOINC_SYSTEMS)
    if codes:
        found.append(_measurement(model, codes, position, when))
    for component in model.component or ():
        component_codes = _codes(component.code, _LOINC_SYSTEMS)
        if component_codes:
            found.append(_measurement(component, component_codes, position, when))
    return found


def loinc_index(definition: Definition) -> dict[str, Finding]:
    """The dictionary's findings by LOINC code (findings without one cannot come from FHIR)."""
    return {finding.loinc: finding for finding in definition.findings if finding.loinc}


def _convert(measurement: Measurement, finding: Finding) -> tuple[float | None, Issue | None]:
    name = f"findings.{finding.key}"
    value = measurement.value
    if measurement.absent:
        return None, Issue(
            "missing", name, f"The Observation of {finding.display_name} has no value.", measurement.position
        )
    if measurement.wrong_type or value is None:
        return None, Issue(
            "invalid_value",
            name,
            f"{finding.display_name} must be a finite number (valueQuantity, valueInteger or valueBoolean).",
            measurement.position,
        )
    if measurement.comparator:
        return None, Issue(
            "invalid_value",
            name,
            f"{finding.display_name} is given with a comparator (<, >): not a measured value.",
            measurement.position,
        )
    target = finding.unit or "1"
    source = measurement.unit
    if measurement.unit_system not in (None, UCUM):
        return None, Issue(
            "unit_refused",
            name,
            f"{finding.display_name}: units are taken only in UCUM ({UCUM}).",
            measurement.position,
        )
    if not source:
        if target == "1":  # a count, a flag, a category: nothing to convert
            return value, None
        return None, Issue(
            "unit_refused",
            name,
            f"{finding.display_name} has no unit; it is kept in {print_unit(target) or target}.",
            measurement.position,
        )
    try:
        return units.convert(value, source, target), None
    except units.UnitRefused as refused:
        return None, Issue("unit_refused", name, f"{finding.display_name}: {refused}.", measurement.position)


def map_observations(
    observations: Sequence[Any] | Iterable[Measurement], definition: Definition
) -> tuple[dict[str, float], list[Issue]]:
    """The findings of an encounter from its Observations (decoded JSON, validated models, or
    ``Measurement`` items already read), in the dictionary's order and units.

    An Observation whose code is not in the dictionary is not used; several values of one finding
    keep the latest (by effective time, then by position); a value that cannot be converted or
    lies outside the hard limits is left out with a problem; a finding of the dictionary that the
    model uses and no Observation gives is a ``missing`` problem. Raises
    ``resources.ResourceInvalid`` for a resource fhir.resources refuses (validate resources one by
    one first to report them by position).
    """
    read: list[Measurement] = []
    for position, item in enumerate(observations):
        read.extend([item] if isinstance(item, Measurement) else measurements(item, position))
    per_finding: dict[str, list[Measurement]] = {}
    by_loinc = definition.finding_by_loinc
    for measurement in read:
        for code in measurement.loinc:  # the first code the dictionary has
            finding = by_loinc(code)
            if finding is not None:
                per_finding.setdefault(finding.key, []).append(measurement)
                break
    findings: dict[str, float] = {}
    problems: list[Issue] = []
    for finding in definition.findings:
        candidates = per_finding.get(finding.key)
        if not candidates:
            if finding.used_by_model and finding.loinc:
                problems.append(
                    Issue(
                        "missing",
                        f"findings.{finding.key}",
                        f"No Observation with LOINC {finding.loinc} ({finding.display_name}).",
                    )
                )
            continue
        # The latest by effective time; equal or unknown times: the one given last.
        latest = candidates[0]
        if len(candidates) > 1:
            latest = max(enumerate(candidates), key=lambda pair: (pair[1].when, pair[0]))[1]
            problems.append(
                Issue(
                    "repeated",
                    f"findings.{finding.key}",
                    f"{len(candidates)} Observations of {finding.display_name}; the latest was taken.",
                    latest.position,
                )
            )
        value, problem = _convert(latest, finding)
        if problem is not None:
            problems.append(problem)
            continue
        assert value is not None
        error, quality = check_finding_value(finding, value)
        if error is not None:
            problems.append(Issue(error.code, error.field, error.message + " It was left out.", latest.position))
            continue
        if quality is not None:
            problems.append(Issue(quality.code, quality.field, quality.message, latest.position))
        findings[finding.key] = value
    return findings, problems


# --- Conditions ------------------------------------------------------------------------------------


def condition_codes(condition: Any) -> list[str]:
    """The ICD-10 codes of a Condition (normalised), or none when it is entered in error or refuted.

    Raises ``resources.ResourceInvalid`` for a resource fhir.resources refuses.
    """
    model = resources.validate(condition, "Condition")
    status = _codes(model.verificationStatus, ("http://terminology.hl7.org/CodeSystem/condition-ver-status",))
    if VOID_CONDITION.intersection(status):
        return []
    codes: list[str] = []
    for code in _codes(model.code, ICD10_SYSTEMS):
        normal = normalise_icd10(code)
        if normal and normal not in codes:
            codes.append(normal)
    return codes


SNOMED = "http://snomed.info/sct"


def condition_snomed_codes(condition: Any) -> list[str]:
    """The SNOMED CT codes of a Condition, or none when it is entered in error or refuted (Synthea
    and many record systems write symptoms as SNOMED CT coded Conditions: "Cough (finding)")."""
    model = resources.validate(condition, "Condition")
    status = _codes(model.verificationStatus, ("http://terminology.hl7.org/CodeSystem/condition-ver-status",))
    if VOID_CONDITION.intersection(status):
        return []
    return _codes(model.code, (SNOMED,))


def map_symptoms(snomed_codes: Iterable[str], definition: Definition) -> list[str]:
    """The dictionary's symptoms (keys, in dictionary order) whose SNOMED CT code is among ``snomed_codes``."""
    present = frozenset(snomed_codes)
    return [symptom.key for symptom in definition.symptoms if symptom.snomed_ct and symptom.snomed_ct in present]


def map_conditions(
    conditions: Sequence[Any], definition: Definition, *, ranked: Mapping[int, int] | None = None
) -> tuple[str, str, list[Issue]]:
    """(code, display name, problems): the diagnosis of an encounter from its Conditions (decoded
    JSON, validated models, or lists (or tuples) of codes from ``condition_codes``).

    Only ICD-10 codes in the cohort's code set count. One such code is the diagnosis; several
    different ones are resolved by ``ranked`` (position -> the Encounter's diagnosis rank, 1 the
    principal) and otherwise left as ``ambiguous_diagnosis``. ICD-10 codes outside the code set are
    ``unknown_diagnosis_code`` problems; Conditions coded otherwise (SNOMED CT only) are not used.
    """
    known: dict[str, int] = {}  # code -> the position that gave it first
    problems: list[Issue] = []
    for position, item in enumerate(conditions):
        codes = list(item) if isinstance(item, list | tuple) else condition_codes(item)
        inside = [code for code in codes if code in definition.diagnosis_codes]
        if codes and not inside:
            problems.append(
                Issue(
                    "unknown_diagnosis_code",
                    "diagnosis.code",
                    f"The Condition's ICD-10 code {codes[0]} is not in this cohort's code set.",
                    position,
                )
            )
        for code in inside:
            known.setdefault(code, position)
    if not known:
        return "", "", problems
    if len(known) > 1 and ranked:
        best = min(known.items(), key=lambda pair: (ranked.get(pair[1], math.inf), pair[1]))
        if ranked.get(best[1]) is not None:
            known = {best[0]: best[1]}
    if len(known) > 1:
        problems.append(
            Issue(
                "ambiguous_diagnosis",
                "diagnosis.code",
                f"{len(known)} different diagnoses of this cohort ({', '.join(sorted(known))}) and none ranked "
                "first by the Encounter; the case was left without a diagnosis.",
            )
        )
        return "", "", problems
    code = next(iter(known))
    return code, definition.diagnosis_name(code), problems


# --- Encounter -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EncounterFacts:
    """What the import needs of an Encounter."""

    id: str
    patient_id: str | None
    date: dt.date | None
    void: bool  # entered in error or cancelled
    diagnosis_ranks: dict[str, int] = field(default_factory=dict)  # Condition id -> rank


def encounter_facts(encounter: Any, *, fallback_id: str | None = None) -> EncounterFacts:
    """The id, subject, date (the period's start, else its end, as written) and diagnosis ranks of
    an Encounter. Raises ``resources.ResourceInvalid`` for a resource fhir.resources refuses."""
    model = resources.validate(encounter, "Encounter")
    period = model.period
    date = _full_date(period.start) if period else None
    if date is None and period is not None:
        date = _full_date(period.end)
    ranks: dict[str, int] = {}
    for item in model.diagnosis or ():
        condition_id = reference_id(item.condition.reference if item.condition else None, "Condition")
        if condition_id and item.rank is not None:
            ranks[condition_id] = int(item.rank)
    return EncounterFacts(
        id=model.id or fallback_id or "",
        patient_id=reference_id(model.subject.reference if model.subject else None, "Patient"),
        date=date,
        void=model.status in VOID_ENCOUNTER,
        diagnosis_ranks=ranks,
    )


@dataclass(frozen=True, slots=True)
class MappedEncounter:
    """An encounter mapped to the interchange record, with every problem met on the way."""

    external_id: str
    encounter_date: dt.date | None
    patient: dict[str, Any]
    findings: dict[str, float]
    diagnosis_code: str
    diagnosis_label: str
    problems: tuple[Issue, ...]
    symptoms: tuple[str, ...] = ()

    def record(self, *, source: str, cohort: str) -> dict[str, Any]:
        """The interchange record (``cases.interchange.parse_record`` checks it)."""
        return {
            "external_id": self.external_id,
            "source": source,
            "cohort": cohort,
            "patient": self.patient,
            "encounter_date": self.encounter_date.isoformat() if self.encounter_date else None,
            "findings": self.findings,
            "symptoms": list(self.symptoms),
            "diagnosis": {"code": self.diagnosis_code, "label": self.diagnosis_label} if self.diagnosis_code else None,
        }


def map_encounter(
    *,
    patient: Any,
    encounter: Any,
    observations: Sequence[Any],
    conditions: Sequence[Any],
    definition: Definition,
) -> MappedEncounter:
    """One encounter: the Patient, the Encounter, its Observations and its Conditions (decoded
    JSON or validated models) mapped under ``definition``. Problems from the Observations and
    Conditions carry their position in those lists. Raises ``resources.ResourceInvalid`` for a
    resource fhir.resources refuses."""
    facts = encounter_facts(encounter)
    identity, problems = map_patient(patient)
    findings, finding_problems = map_observations(observations, definition)
    condition_ids = [(item.get("id") if isinstance(item, dict) else getattr(item, "id", None)) for item in conditions]
    ranked = {
        position: facts.diagnosis_ranks[cid]
        for position, cid in enumerate(condition_ids)
        if cid and cid in facts.diagnosis_ranks
    }
    models = [resources.validate(item, "Condition") for item in conditions]
    code, label, diagnosis_problems = map_conditions(models, definition, ranked=ranked)
    symptoms = map_symptoms((code for item in models for code in condition_snomed_codes(item)), definition)
    if facts.date is None:
        problems.append(Issue("missing", "encounter_date", "The Encounter has no period start (or end)."))
    return MappedEncounter(
        external_id=facts.id,
        encounter_date=facts.date,
        patient=identity,
        findings=findings,
        diagnosis_code=code,
        diagnosis_label=label,
        problems=tuple(problems + finding_problems + diagnosis_problems),
        symptoms=tuple(symptoms),
    )
