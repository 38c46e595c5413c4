"""Check a case record against a dictionary version: pure functions, no database.

``validate_record`` answers two lists:

- ``errors``: the record cannot be taken under this version. An unknown findings or symptom key
  is named by its position (0-based, in the record's order) and never by its text: a key may
  itself be an identifier ("smith_bp"). Values outside a finding's hard limits or of the wrong
  type, a diagnosis code outside the code set, an encounter in the future and a birth after the
  encounter are errors too; those messages name the dictionary's finding, never the value.
- ``quality``: the record is taken, with a lower quality score: values outside the expected range.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cases.dictionary.definition import Definition, Finding
from cases.dictionary.units import with_unit

if TYPE_CHECKING:
    from cases.interchange import CaseRecord


@dataclass(frozen=True, slots=True)
class Issue:
    code: str
    field: str
    message: str
    position: int | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"code": self.code, "field": self.field, "message": self.message}
        if self.position is not None:
            data["position"] = self.position
        return data

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


@dataclass(frozen=True, slots=True)
class ValidationResult:
    errors: tuple[Issue, ...] = ()
    quality: tuple[Issue, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.errors

    def errors_json(self) -> list[dict[str, Any]]:
        return [issue.to_json() for issue in self.errors]


@dataclass
class _Collector:
    errors: list[Issue] = field(default_factory=list)
    quality: list[Issue] = field(default_factory=list)


def _label(finding: Finding) -> str:
    return f"findings.{finding.key}"


def _with_unit(text: str, finding: Finding) -> str:
    return with_unit(text, finding.unit)


def check_finding_value(finding: Finding, value: Any) -> tuple[Issue | None, Issue | None]:
    """(error, quality issue) of one value of a known finding; either may be None."""
    name = _label(finding)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return Issue("invalid_value", name, f"{finding.display_name} must be a number."), None
    number = float(value)
    if finding.value_type == "integer" and not number.is_integer():
        return Issue("invalid_value", name, f"{finding.display_name} must be a whole number."), None
    if finding.value_type == "boolean" and number not in (0.0, 1.0):
        return Issue("invalid_value", name, f"{finding.display_name} must be 0 (no) or 1 (yes)."), None
    if finding.value_type == "category":
        codes = [code for code, _name in finding.values]
        if not number.is_integer() or int(number) not in codes:
            allowed = ", ".join(f"{code} ({label})" for code, label in finding.values)
            return Issue("invalid_value", name, f"{finding.display_name} must be one of {allowed}."), None
        return None, None
    if not finding.hard_limits.contains(number):
        limits = _with_unit(str(finding.hard_limits), finding)
        return Issue(
            "outside_hard_limits", name, f"{finding.display_name} is outside its hard limits ({limits})."
        ), None
    if not finding.expected_range.contains(number):
        expected = _with_unit(str(finding.expected_range), finding)
        return None, Issue(
            "outside_expected_range", name, f"{finding.display_name} is outside the expected range ({expected})."
        )
    return None, None


def _check_findings(findings: Mapping[str, Any], definition: Definition, out: _Collector) -> None:
    total = len(findings)
    for position, (key, value) in enumerate(findings.items()):
        finding = definition.finding(key)
        if finding is None:
            out.errors.append(
                Issue(
                    "unknown_finding",
                    "findings",
                    f"Entry {position + 1} (of {total}) is not a finding of this cohort's dictionary.",
                    position,
                )
            )
            continue
        error, quality = check_finding_value(finding, value)
        if error:
            out.errors.append(error)
        if quality:
            out.quality.append(quality)


def _check_symptoms(symptoms: list[str], definition: Definition, out: _Collector) -> None:
    known = definition.symptom_keys
    for position, key in enumerate(symptoms):
        if key not in known:
            out.errors.append(
                Issue(
                    "unknown_symptom",
                    "symptoms",
                    f"Entry {position + 1} (of {len(symptoms)}) is not a symptom of this cohort's dictionary.",
                    position,
                )
            )


def check_diagnosis_code(code: str, definition: Definition) -> Issue | None:
    """An error unless ``code`` is empty or in the code set. The message does not repeat the code."""
    if code and code not in definition.diagnosis_codes:
        return Issue(
            "unknown_diagnosis_code",
            "diagnosis.code",
            "The diagnosis code is not in this cohort's code set ("
            + ", ".join(sorted(definition.diagnosis_codes))
            + ").",
        )
    return None


def _check_dates(record: CaseRecord, today: dt.date, out: _Collector) -> None:
    if record.encounter_date > today:
        out.errors.append(Issue("future_encounter", "encounter_date", "The encounter date is in the future."))
    raw = record.patient.get("birth_date")
    try:
        birth = dt.date.fromisoformat(raw) if isinstance(raw, str) and raw else None
    except ValueError:
        birth = None
    if birth is not None and birth > record.encounter_date:
        out.errors.append(
            Issue("birth_after_encounter", "patient.birth_date", "The birth date is after the encounter date.")
        )


def validate_record(record: CaseRecord, definition: Definition, *, today: dt.date) -> ValidationResult:
    """Every error and quality issue of ``record`` under ``definition`` (``today``: the site's date)."""
    out = _Collector()
    _check_dates(record, today, out)
    _check_findings(record.findings, definition, out)
    _check_symptoms(record.symptoms, definition, out)
    diagnosis = check_diagnosis_code(record.diagnosis_code, definition)
    if diagnosis:
        out.errors.append(diagnosis)
    return ValidationResult(tuple(out.errors), tuple(out.quality))
