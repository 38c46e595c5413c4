"""The JSON Schema of a valid case record of a cohort, from its dictionary version.

REST clients validate a record with it before they send it (``GET /api/v1/cohorts/{slug}/schema/``).
It says what a schema can: the interchange shape, the findings keys and their types and hard limits,
the symptom vocabulary and the diagnosis code set. Two checks stay with the server because they
depend on the day or compare two fields: an encounter date in the future, and a birth date after
the encounter.
"""

from __future__ import annotations

from typing import Any

from cases.dictionary.definition import Definition, Finding, Range
from cases.interchange import (
    MAX_CODE_LENGTH,
    MAX_ID_LENGTH,
    MAX_NOTE_LENGTH,
    MAX_SHORT_TEXT,
    MAX_SOURCE_LENGTH,
    PATIENT_KEYS,
    SEXES,
)

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def _describe(finding: Finding) -> str:
    parts = []
    if finding.unit:
        parts.append(f"Unit (UCUM): {finding.unit}.")
    if finding.loinc:
        parts.append(f"LOINC {finding.loinc}.")
    if finding.expected_range != Range():
        parts.append(f"Expected range {finding.expected_range} (outside: accepted, with a quality issue).")
    if not finding.used_by_model:
        parts.append("Not a model input.")
    if finding.description:
        parts.append(finding.description)
    return " ".join(parts)


def finding_schema(finding: Finding) -> dict[str, Any]:
    schema: dict[str, Any] = {"title": finding.display_name}
    if finding.value_type == "boolean":
        schema["enum"] = [0, 1]
    elif finding.value_type == "category":
        schema["enum"] = [code for code, _name in finding.values]
        schema["description"] = "; ".join(f"{code}: {name}" for code, name in finding.values)
    else:
        schema["type"] = finding.value_type  # "number" or "integer"
        if finding.hard_limits.min is not None:
            schema["minimum"] = finding.hard_limits.min
        if finding.hard_limits.max is not None:
            schema["maximum"] = finding.hard_limits.max
    description = _describe(finding)
    if description:
        schema["description"] = f"{schema['description']}. {description}" if "description" in schema else description
    return schema


def _text(max_length: int, **extra: Any) -> dict[str, Any]:
    return {"type": "string", "maxLength": max_length, **extra}


def record_json_schema(definition: Definition, *, cohort: str, version: int) -> dict[str, Any]:
    """A Draft 2020-12 JSON Schema of an interchange record of ``cohort`` under this version."""
    patient_properties: dict[str, Any] = {key: _text(MAX_SHORT_TEXT) for key in sorted(PATIENT_KEYS)}
    patient_properties["mrn"] = _text(MAX_SHORT_TEXT, minLength=1)
    patient_properties["birth_date"] = {"type": "string", "format": "date"}
    patient_properties["sex"] = {"enum": sorted(SEXES)}
    codes = [item.code for item in definition.diagnoses]
    return {
        "$schema": SCHEMA_DIALECT,
        "title": f"A {cohort} case record (data dictionary version {version})",
        "description": "The interchange record (docs/data-dictionary.md). The server also refuses an encounter "
        "date in the future and a birth date after the encounter.",
        "type": "object",
        "required": ["external_id", "cohort", "patient", "encounter_date"],
        "properties": {
            "external_id": _text(MAX_ID_LENGTH, minLength=1),
            "source": _text(MAX_SOURCE_LENGTH, pattern=r"^\S+$"),
            "cohort": {"const": cohort},
            "patient": {"type": "object", "required": ["mrn"], "properties": patient_properties},
            "encounter_date": {"type": "string", "format": "date"},
            "findings": {
                "type": "object",
                "properties": {item.key: finding_schema(item) for item in definition.findings},
                "additionalProperties": False,
            },
            "symptoms": {
                "type": "array",
                "items": {"enum": [item.key for item in definition.symptoms]},
                "uniqueItems": True,
            },
            "note": _text(MAX_NOTE_LENGTH),
            "diagnosis": {
                "type": "object",
                "properties": {
                    "code": {
                        "enum": ["", *codes],
                        "maxLength": MAX_CODE_LENGTH,
                        "description": "; ".join(f"{item.code}: {item.display_name}" for item in definition.diagnoses),
                    },
                    "label": _text(MAX_SHORT_TEXT),
                },
            },
        },
    }
