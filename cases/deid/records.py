"""The de-identified record: the only form of a case that leaves the ``cases`` app."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from cases.deid.identifiers import _parse_date
from cases.deid.safe_harbor import AGE_CEILING, OLDEST_BAND, POLICY_VERSION, age_band, generalise_zip, pseudonym
from cases.deid.scrubbing import OwnIdentifiers
from cases.quality import age_at

if TYPE_CHECKING:
    from cases.interchange import CaseRecord


def deidentify(record: CaseRecord, *, key: str | bytes) -> dict[str, Any]:
    """The de-identified form of a case record: what datasets, exports and ML staff see."""
    patient = record.patient
    born = _parse_date(patient.get("birth_date"))
    age: int | str | None = None
    band: str | None = None
    if born is not None:
        years = age_at(born, record.encounter_date)
        if years >= 0:
            band = age_band(years)
            age = OLDEST_BAND if years > AGE_CEILING else years
    scrub: Callable[[str], str] = OwnIdentifiers(patient, record.encounter_date).scrub
    return {
        "policy_version": POLICY_VERSION,
        "patient_pseudonym": pseudonym(record.source, str(patient["mrn"]), key=key),
        "source": record.source,
        "cohort": record.cohort,
        "encounter_year": record.encounter_date.year,
        "age": age,
        "age_band": band,
        "sex": patient.get("sex") or "unknown",
        "zip3": generalise_zip(patient.get("zip")),
        "findings": dict(record.findings),
        "symptoms": [scrub(symptom) for symptom in record.symptoms],
        "note": scrub(record.note),
        "diagnosis": {
            "code": record.diagnosis_code,
            "label": scrub(record.diagnosis_label),
        },
    }


def record_sha256(deidentified: dict[str, Any]) -> str:
    """sha256 (hex) of a de-identified record's canonical JSON (sorted keys, no spaces, UTF-8)."""
    text = json.dumps(deidentified, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()
