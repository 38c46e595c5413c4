"""The case interchange format (JSON Lines, one case per line): parsing and validation.

One parser for the import command, the import endpoint, the case API and the demo data, so a
record means the same thing wherever it enters. ``parse_record`` checks structure and types;
whether values are *plausible* is the quality score's business (``cases.quality``), not a reason
to refuse a case. Error messages name fields, never patient values.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from cases.deid import scrubbing
from learning_engine.parsers import InvalidCharacter, refuse_nul

KNOWN_KEYS = frozenset(
    {"external_id", "source", "cohort", "patient", "encounter_date", "findings", "symptoms", "note", "diagnosis"}
)
PATIENT_KEYS = frozenset({"mrn", "name", "birth_date", "sex", "zip", "phone", "email", "address", "ssn"})
SEXES = frozenset({"female", "male", "other", "unknown"})

MAX_ID_LENGTH = 200
MAX_SOURCE_LENGTH = 100
MAX_COHORT_LENGTH = 100
MAX_NOTE_LENGTH = 50_000
MAX_FINDINGS = 200
MAX_SYMPTOMS = 100
MAX_SHORT_TEXT = 255
MAX_CODE_LENGTH = 20
MAX_KEY_LENGTH = 64
# Unknown keys are kept verbatim; bound their nesting so a hostile line cannot exhaust the stack
# when the record is hashed or stored.
MAX_EXTRA_DEPTH = 20
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


class RecordError(ValueError):
    """A record that cannot be taken. ``field`` is a dotted path; the message holds no PHI."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}" if field_name else message)
        self.field = field_name
        self.message = message


@dataclass(frozen=True, slots=True)
class CaseRecord:
    """A validated interchange record, split into the columns of ``cases.Case``."""

    source: str
    external_id: str
    cohort: str
    patient: dict[str, Any]
    encounter_date: dt.date
    findings: dict[str, float]
    symptoms: list[str]
    note: str
    diagnosis_code: str
    diagnosis_label: str
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Back to the interchange shape (unknown keys included)."""
        record: dict[str, Any] = dict(self.extra)
        record.update(
            {
                "external_id": self.external_id,
                "source": self.source,
                "cohort": self.cohort,
                "patient": self.patient,
                "encounter_date": self.encounter_date.isoformat(),
                "findings": self.findings,
                "symptoms": self.symptoms,
                "note": self.note,
                "diagnosis": {"code": self.diagnosis_code, "label": self.diagnosis_label},
            }
        )
        return record

    def content_hash(self) -> str:
        """sha256 of the canonical JSON: equal records, equal hashes (re-import detects no change)."""
        canonical = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(canonical.encode()).hexdigest()


def _check_chars(value: str, name: str) -> None:
    """Refuse text that a database cannot store: NUL (PostgreSQL) and lone surrogates (UTF-8)."""
    if "\x00" in value:
        raise RecordError(name, "must not contain NUL characters.")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise RecordError(name, "must be valid Unicode text (no lone surrogates).") from None


def _text(value: Any, name: str, *, max_length: int, required: bool = False) -> str:
    if value is None:
        if required:
            raise RecordError(name, "is required.")
        return ""
    if not isinstance(value, str):
        raise RecordError(name, "must be a string.")
    text = value.strip()
    if required and not text:
        raise RecordError(name, "must not be empty.")
    if len(text) > max_length:
        raise RecordError(name, f"is longer than {max_length} characters.")
    _check_chars(text, name)
    return text


def _key(key: Any, name: str) -> str:
    if not isinstance(key, str) or not key or len(key) > MAX_KEY_LENGTH:
        raise RecordError(name, f"keys must be names of 1 to {MAX_KEY_LENGTH} characters.")
    _check_chars(key, name)
    return key


def parse_date(value: Any, name: str, *, required: bool = False) -> dt.date | None:
    if value is None or value == "":
        if required:
            raise RecordError(name, "is required.")
        return None
    # fromisoformat alone would also take "20260502" and week dates ("2026-W18-6").
    if not isinstance(value, str) or not _ISO_DATE.fullmatch(value):
        raise RecordError(name, "must be a date string (YYYY-MM-DD).")
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise RecordError(name, "is not a valid date (YYYY-MM-DD).") from None


def _number(value: Any, name: str) -> float:
    # bool is an int subclass; "true" is not a heart rate.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RecordError(name, "must be a number.")
    try:
        number = float(value)
    except OverflowError:  # an integer literal too large for a float
        raise RecordError(name, "must be a finite number.") from None
    if not math.isfinite(number):
        raise RecordError(name, "must be a finite number.")
    return number


def parse_patient(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise RecordError("patient", "must be an object.")
    patient: dict[str, Any] = {}
    for key, item in value.items():
        name = f"patient.{key}"
        if key == "birth_date":
            born = parse_date(item, name)
            if born is not None:
                patient[key] = born.isoformat()
        elif key == "sex":
            sex = _text(item, name, max_length=20).lower()
            if sex and sex not in SEXES:
                raise RecordError(name, f"must be one of {', '.join(sorted(SEXES))}.")
            if sex:
                patient[key] = sex
        elif key in PATIENT_KEYS:
            text = _text(item, name, max_length=MAX_SHORT_TEXT)
            if text:
                patient[key] = text
        else:
            # Unknown patient keys are kept in the raw record (and dropped by de-identification).
            _key(key, "patient")
            if isinstance(item, str):
                item = _text(item, name, max_length=MAX_SHORT_TEXT)
            elif isinstance(item, (int, float)) and not isinstance(item, bool):
                _number(item, name)
            elif item is not None and not isinstance(item, bool):
                raise RecordError(name, "must be a plain value.")
            patient[key] = item
    if not patient.get("mrn"):
        raise RecordError("patient.mrn", "is required.")
    return patient


def parse_findings(value: Any) -> dict[str, float]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise RecordError("findings", "must be an object of numbers.")
    if len(value) > MAX_FINDINGS:
        raise RecordError("findings", f"has more than {MAX_FINDINGS} entries.")
    findings: dict[str, float] = {}
    for position, (key, item) in enumerate(value.items()):
        _key(key, "findings")
        # Named by position, as symptoms are: a key may itself be an identifier (a surname, an
        # MRN), and this check runs before any data dictionary has said which keys are known.
        findings[key] = _number(item, f"findings[{position}]")
    return findings


def check_finding_keys(findings: dict[str, float], patient: dict[str, Any], encounter_date: dt.date | None) -> None:
    """Refuse a findings key that holds an identifier of the case (``scrubbing.finding_key_identifiers``).

    Keys reach de-identified records and datasets as they are, until a data dictionary names the
    findings. The message names the key's position and the kind, never the key: it holds PHI.
    """
    if not findings:
        return
    found = scrubbing.finding_key_identifiers(findings, patient, encounter_date=encounter_date)
    if found:
        position, kinds = found[0]
        raise RecordError(
            "findings",
            f"key {position + 1} (of {len(findings)}) holds an identifier of the patient or something shaped "
            f"like one ({', '.join(kinds)}). Findings keys are passed on as they are: name the measurement, "
            "not the person, date or number.",
        )


def parse_symptoms(value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise RecordError("symptoms", "must be a list of strings.")
    if len(value) > MAX_SYMPTOMS:
        raise RecordError("symptoms", f"has more than {MAX_SYMPTOMS} entries.")
    symptoms: list[str] = []
    for index, item in enumerate(value):
        text = _text(item, f"symptoms[{index}]", max_length=100, required=True).lower()
        if text not in symptoms:
            symptoms.append(text)
    return symptoms


def parse_diagnosis(value: Any) -> tuple[str, str]:
    if value is None:
        return "", ""
    if not isinstance(value, dict):
        raise RecordError("diagnosis", "must be an object with code and label.")
    code = _text(value.get("code"), "diagnosis.code", max_length=MAX_CODE_LENGTH).upper()
    label = _text(value.get("label"), "diagnosis.label", max_length=MAX_SHORT_TEXT)
    return code, label


def _check_extra(value: Any, name: str, depth: int = 0) -> None:
    """Unknown keys are kept as they came, but only as JSON that every database can store."""
    if depth > MAX_EXTRA_DEPTH:
        raise RecordError(name, f"is nested deeper than {MAX_EXTRA_DEPTH} levels.")
    if isinstance(value, dict):
        for key, item in value.items():
            _key(key, name)
            _check_extra(item, f"{name}.{key}", depth + 1)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_extra(item, f"{name}[{index}]", depth + 1)
    elif isinstance(value, str):
        _check_chars(value, name)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        _number(value, name)
    elif value is not None and not isinstance(value, bool):
        raise RecordError(name, "must be a JSON value.")


def _slug(value: Any, name: str, *, max_length: int) -> str:
    text = _text(value, name, max_length=max_length, required=True)
    if any(ch.isspace() for ch in text):
        raise RecordError(name, "must not contain spaces.")
    return text


def parse_record(obj: Any, *, default_source: str | None = None) -> CaseRecord:
    """Validate one interchange record. Raises ``RecordError`` naming the first bad field."""
    if not isinstance(obj, dict):
        raise RecordError("", "A case must be a JSON object.")
    source = obj.get("source") or default_source
    extra = {key: value for key, value in obj.items() if key not in KNOWN_KEYS}
    for key, value in extra.items():
        _key(key, "extra")
        _check_extra(value, key)
    diagnosis_code, diagnosis_label = parse_diagnosis(obj.get("diagnosis"))
    patient = parse_patient(obj.get("patient"))
    encounter_date = parse_date(obj.get("encounter_date"), "encounter_date", required=True)
    findings = parse_findings(obj.get("findings"))
    check_finding_keys(findings, patient, encounter_date)
    return CaseRecord(
        source=_slug(source, "source", max_length=MAX_SOURCE_LENGTH),
        external_id=_text(obj.get("external_id"), "external_id", max_length=MAX_ID_LENGTH, required=True),
        cohort=_slug(obj.get("cohort"), "cohort", max_length=MAX_COHORT_LENGTH),
        patient=patient,
        encounter_date=encounter_date,  # type: ignore[arg-type]
        findings=findings,
        symptoms=parse_symptoms(obj.get("symptoms")),
        note=_text(obj.get("note"), "note", max_length=MAX_NOTE_LENGTH),
        diagnosis_code=diagnosis_code,
        diagnosis_label=diagnosis_label,
        extra=extra,
    )


def parse_line(line: str | bytes, *, default_source: str | None = None) -> CaseRecord:
    """One JSON Lines line to a record; bad JSON is a ``RecordError`` too."""
    try:
        refuse_nul(line.encode("utf-8", "surrogatepass") if isinstance(line, str) else line)
    except InvalidCharacter as exc:
        raise RecordError("", str(exc).capitalize()) from None
    try:
        obj = json.loads(line)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        # RecursionError: a line of ten thousand "[" is not JSON we can take either.
        raise RecordError("", f"Not valid JSON ({type(exc).__name__}).") from None
    return parse_record(obj, default_source=default_source)
