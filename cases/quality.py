"""Quality score of a case: a number in 0..1 and the list of what lowered it.

Each check has a weight; the score is the weighted share of checks passed. A check that does not
apply (no birth date, or one after the encounter, so no meaningful age) is left out of the share
only where another check already penalises the gap, so no single error is counted twice.
Issue messages name fields and ranges, never patient values.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.utils import timezone

if TYPE_CHECKING:
    from cases.interchange import CaseRecord

# Physiological ranges of the findings we know. Outside them a value is implausible (a typo or a
# unit error), not impossible to record; the case stays, with a lower score. Findings we do not
# know (the breast-mass measurements, say) are only required to be non-negative.
PLAUSIBLE_RANGES: dict[str, tuple[float, float]] = {
    "temperature_c": (30.0, 44.0),
    "heart_rate": (20.0, 250.0),
    "respiratory_rate": (4.0, 70.0),
    "spo2": (50.0, 100.0),
    "systolic_bp": (50.0, 260.0),
    "diastolic_bp": (20.0, 160.0),
    "wbc": (0.1, 100.0),
    "crp": (0.0, 500.0),
    "procalcitonin": (0.0, 200.0),
    "hemoglobin": (3.0, 25.0),
    "platelets": (5.0, 2000.0),
    "glucose": (1.0, 60.0),
    "lactate": (0.0, 30.0),
}
MAX_AGE_YEARS = 120

WEIGHTS: dict[str, float] = {
    "missing_required": 3.0,
    "implausible_value": 2.0,
    "implausible_age": 2.0,
    "future_encounter": 2.0,
    "birth_after_encounter": 2.0,
    "missing_note": 1.0,
    "missing_label": 3.0,
}
REQUIRED_PATIENT_FIELDS = ("birth_date", "sex")


@dataclass(frozen=True, slots=True)
class QualityIssue:
    code: str
    field: str
    message: str

    def to_json(self) -> dict[str, str]:
        return {"code": self.code, "field": self.field, "message": self.message}


def age_at(birth: dt.date, on: dt.date) -> int:
    return on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))


def assess(
    record: CaseRecord, *, today: dt.date | None = None, ranges: Mapping[str, tuple[float, float]] | None = None
) -> tuple[float, list[dict[str, str]]]:
    """Score a record. Returns ``(score, issues)`` with issues as JSON-ready dicts.

    ``ranges``: the expected range per finding from the record's data dictionary version; without
    one, ``PLAUSIBLE_RANGES`` (and non-negative for the findings it does not name).
    """
    # The site's calendar day (settings.TIME_ZONE), not the server's: "future" means after today there.
    today = today or timezone.localdate()
    issues: list[QualityIssue] = []
    passed: dict[str, bool] = {}

    birth_raw: Any = record.patient.get("birth_date")
    try:
        birth = dt.date.fromisoformat(birth_raw) if birth_raw else None
    except (TypeError, ValueError):  # not from parse_record (an admin edit, say): as good as missing
        birth = None
    present = {name: bool(record.patient.get(name)) for name in REQUIRED_PATIENT_FIELDS}
    present["birth_date"] = birth is not None
    missing = [f"patient.{name}" for name in REQUIRED_PATIENT_FIELDS if not present[name]]
    if not record.findings:
        missing.append("findings")
    for name in missing:
        issues.append(QualityIssue("missing_required", name, f"{name} is missing."))
    passed["missing_required"] = not missing

    implausible = []
    for key, value in record.findings.items():
        low, high = (ranges if ranges is not None else PLAUSIBLE_RANGES).get(key, (0.0, float("inf")))
        if not low <= value <= high:
            implausible.append(key)
            bound = (
                f"{low:g}..{high:g}"
                if math.isfinite(low) and math.isfinite(high)
                else (f">= {low:g}" if math.isfinite(low) else f"<= {high:g}")
            )
            issues.append(QualityIssue("implausible_value", f"findings.{key}", f"findings.{key} is outside {bound}."))
    passed["implausible_value"] = not implausible

    passed["future_encounter"] = record.encounter_date <= today
    if not passed["future_encounter"]:
        issues.append(QualityIssue("future_encounter", "encounter_date", "The encounter date is in the future."))
    if birth is not None:
        passed["birth_after_encounter"] = birth <= record.encounter_date
        if not passed["birth_after_encounter"]:
            issues.append(
                QualityIssue("birth_after_encounter", "patient.birth_date", "The birth date is after the encounter.")
            )
        else:  # A birth after the encounter is one error, not two: the age check applies only otherwise.
            passed["implausible_age"] = age_at(birth, record.encounter_date) <= MAX_AGE_YEARS
            if not passed["implausible_age"]:
                issues.append(
                    QualityIssue(
                        "implausible_age", "patient.birth_date", f"The age is outside 0..{MAX_AGE_YEARS} years."
                    )
                )

    passed["missing_note"] = bool(record.note.strip())
    if not passed["missing_note"]:
        issues.append(QualityIssue("missing_note", "note", "The clinical note is empty."))
    passed["missing_label"] = bool(record.diagnosis_code)
    if not passed["missing_label"]:
        issues.append(QualityIssue("missing_label", "diagnosis.code", "The diagnosis code is missing."))

    total = sum(WEIGHTS[name] for name in passed)
    score = sum(WEIGHTS[name] for name, ok in passed.items() if ok) / total
    return round(score, 4), [issue.to_json() for issue in issues]
