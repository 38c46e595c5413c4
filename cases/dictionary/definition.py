"""The definition of a data dictionary version: its JSON form, checked, and its parsed form.

A definition is one JSON document (``docs/data-dictionary.md`` says why JSON and not rows). It is
checked in two steps: the JSON Schema ``DEFINITION_SCHEMA`` (shape and types, also published in
the docs) and ``parse_definition`` (what a schema cannot say: unique keys and codes, ranges that
are ordered and nested, LOINC and SNOMED CT check digits). Messages name the JSON path of the
problem; a definition holds no patient data, so naming its own values is fine.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from jsonschema import Draft202012Validator

KEY_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"
# ICD-10-CM: a letter, two characters, then optionally a dot and one to four more.
ICD10_PATTERN = r"^[A-Z][0-9][0-9A-Z](\.[0-9A-Z]{1,4})?$"
LOINC_PATTERN = r"^[0-9]{1,7}-[0-9]$"
SNOMED_PATTERN = r"^[1-9][0-9]{5,17}$"
# UCUM units are printable ASCII without spaces ("Cel", "/min", "10*3/uL", "mg/L", "%", "1").
# Checked for syntax only: no UCUM parser is packaged for Python (see the docs).
UCUM_PATTERN = r"^[!-~]{1,64}$"
VALUE_TYPES = ("number", "integer", "boolean", "category")
DEMOGRAPHICS = ("age", "sex")
MAX_FINDINGS = 200  # as many as a record may carry (cases.interchange.MAX_FINDINGS)
MAX_SYMPTOMS = 500
MAX_DIAGNOSES = 500

_RANGE = {
    "type": "object",
    "properties": {"min": {"type": ["number", "null"]}, "max": {"type": ["number", "null"]}},
    "additionalProperties": False,
}
_TEXT = {"type": "string", "minLength": 1, "maxLength": 255}

DEFINITION_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "Clinical data dictionary version",
    "type": "object",
    "required": ["findings", "symptoms", "diagnoses", "demographics"],
    "additionalProperties": False,
    "properties": {
        "findings": {
            "type": "array",
            "maxItems": MAX_FINDINGS,
            "items": {
                "type": "object",
                "required": ["key", "display_name", "value_type"],
                "additionalProperties": False,
                "properties": {
                    "key": {"type": "string", "pattern": KEY_PATTERN},
                    "display_name": _TEXT,
                    "description": {"type": "string", "maxLength": 2000},
                    "unit": {"type": "string", "maxLength": 64},
                    "loinc": {"type": ["string", "null"], "pattern": LOINC_PATTERN},
                    "value_type": {"enum": list(VALUE_TYPES)},
                    "values": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["code", "display_name"],
                            "additionalProperties": False,
                            "properties": {"code": {"type": "integer"}, "display_name": _TEXT},
                        },
                    },
                    "hard_limits": _RANGE,
                    "expected_range": _RANGE,
                    "used_by_model": {"type": "boolean"},
                },
            },
        },
        "symptoms": {
            "type": "array",
            "maxItems": MAX_SYMPTOMS,
            "items": {
                "type": "object",
                "required": ["key", "display_name"],
                "additionalProperties": False,
                "properties": {
                    "key": {"type": "string", "pattern": KEY_PATTERN},
                    "display_name": _TEXT,
                    "snomed_ct": {"type": ["string", "null"], "pattern": SNOMED_PATTERN},
                },
            },
        },
        "diagnoses": {
            "type": "array",
            "minItems": 1,
            "maxItems": MAX_DIAGNOSES,
            "items": {
                "type": "object",
                "required": ["code", "display_name"],
                "additionalProperties": False,
                "properties": {"code": {"type": "string", "pattern": ICD10_PATTERN}, "display_name": _TEXT},
            },
        },
        "demographics": {
            "type": "object",
            "required": list(DEMOGRAPHICS),
            "additionalProperties": False,
            "properties": {name: {"type": "boolean"} for name in DEMOGRAPHICS},
        },
    },
}
_VALIDATOR = Draft202012Validator(DEFINITION_SCHEMA)


class DefinitionError(ValueError):
    """A definition that cannot be taken; ``path`` is where (``findings[3].hard_limits``)."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.message = message


@dataclass(frozen=True, slots=True)
class Range:
    min: float | None = None
    max: float | None = None

    def contains(self, value: float) -> bool:
        return (self.min is None or value >= self.min) and (self.max is None or value <= self.max)

    def __str__(self) -> str:
        if self.min is not None and self.max is not None:
            return f"{_bound(self.min)}..{_bound(self.max)}"
        if self.min is not None:
            return f">= {_bound(self.min)}"
        if self.max is not None:
            return f"<= {_bound(self.max)}"
        return "any value"


def _bound(value: float) -> str:
    """A range bound as people write it: 1000000, not 1e+06 (``:g`` beyond six digits)."""
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:g}"


@dataclass(frozen=True, slots=True)
class Finding:
    key: str
    display_name: str
    value_type: str
    unit: str = ""
    loinc: str | None = None
    description: str = ""
    values: tuple[tuple[int, str], ...] = ()  # (code, display name) of a category
    hard_limits: Range = Range()
    expected_range: Range = Range()
    used_by_model: bool = True


@dataclass(frozen=True, slots=True)
class Symptom:
    key: str
    display_name: str
    snomed_ct: str | None = None


@dataclass(frozen=True, slots=True)
class Diagnosis:
    code: str
    display_name: str


@dataclass(frozen=True, slots=True)
class Definition:
    findings: tuple[Finding, ...]
    symptoms: tuple[Symptom, ...]
    diagnoses: tuple[Diagnosis, ...]
    uses_age: bool
    uses_sex: bool
    # Lookups built once, when the definition is made: a record's check asks for each of its
    # findings, and rebuilding an index per question made checking quadratic in the findings.
    _findings_by_key: dict[str, Finding] = field(init=False, repr=False, compare=False, hash=False)
    _finding_keys: frozenset[str] = field(init=False, repr=False, compare=False, hash=False)
    _symptom_keys: frozenset[str] = field(init=False, repr=False, compare=False, hash=False)
    _diagnosis_names: dict[str, str] = field(init=False, repr=False, compare=False, hash=False)
    _findings_by_loinc: dict[str, Finding] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        by_key = {item.key: item for item in self.findings}
        object.__setattr__(self, "_findings_by_key", by_key)
        object.__setattr__(self, "_finding_keys", frozenset(by_key))
        object.__setattr__(self, "_symptom_keys", frozenset(item.key for item in self.symptoms))
        # The first name of a code wins, as the search it replaces did (codes are unique anyway).
        names: dict[str, str] = {}
        for item in self.diagnoses:
            names.setdefault(item.code, item.display_name)
        object.__setattr__(self, "_diagnosis_names", names)
        # FHIR reads every Observation's codes against it (cases.fhir.mapping); a later finding of a
        # code wins, as the index built per call did.
        object.__setattr__(self, "_findings_by_loinc", {item.loinc: item for item in self.findings if item.loinc})

    def finding_by_loinc(self, code: str) -> Finding | None:
        return self._findings_by_loinc.get(code)

    def finding(self, key: str) -> Finding | None:
        return self._findings_by_key.get(key)

    @property
    def finding_keys(self) -> frozenset[str]:
        return self._finding_keys

    @property
    def symptom_keys(self) -> frozenset[str]:
        return self._symptom_keys

    @property
    def diagnosis_codes(self) -> frozenset[str]:
        return frozenset(self._diagnosis_names)

    def diagnosis_name(self, code: str) -> str:
        return self._diagnosis_names.get(code, "")

    @property
    def model_findings(self) -> tuple[str, ...]:
        """The findings a model uses, in dictionary order."""
        return tuple(item.key for item in self.findings if item.used_by_model)


# --- Code checks -----------------------------------------------------------------------------------


def loinc_check_digit_ok(code: str) -> bool:
    """LOINC's mod-10 check digit (the Luhn scheme over the code's digits): ``8310-5`` is right."""
    if not re.fullmatch(LOINC_PATTERN, code):
        return False
    body, check = code.split("-")
    total = 0
    for position, char in enumerate(reversed(body)):
        digit = int(char)
        if position % 2 == 0:  # the rightmost digit of the body is doubled
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return (10 - total % 10) % 10 == int(check)


_VERHOEFF_D = (
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9),
    (1, 2, 3, 4, 0, 6, 7, 8, 9, 5),
    (2, 3, 4, 0, 1, 7, 8, 9, 5, 6),
    (3, 4, 0, 1, 2, 8, 9, 5, 6, 7),
    (4, 0, 1, 2, 3, 9, 5, 6, 7, 8),
    (5, 9, 8, 7, 6, 0, 4, 3, 2, 1),
    (6, 5, 9, 8, 7, 1, 0, 4, 3, 2),
    (7, 6, 5, 9, 8, 2, 1, 0, 4, 3),
    (8, 7, 6, 5, 9, 3, 2, 1, 0, 4),
    (9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
)
_VERHOEFF_P = (
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9),
    (1, 5, 7, 6, 2, 8, 3, 0, 9, 4),
    (5, 8, 0, 3, 7, 9, 6, 1, 4, 2),
    (8, 9, 1, 6, 0, 4, 3, 5, 2, 7),
    (9, 4, 5, 3, 1, 2, 6, 8, 7, 0),
    (4, 2, 8, 6, 5, 7, 3, 9, 0, 1),
    (2, 7, 9, 3, 8, 0, 6, 4, 1, 5),
    (7, 0, 4, 6, 9, 1, 3, 2, 5, 8),
)


def snomed_check_digit_ok(code: str) -> bool:
    """A SNOMED CT identifier's last digit is a Verhoeff check digit over the whole identifier."""
    if not re.fullmatch(SNOMED_PATTERN, code):
        return False
    state = 0
    for position, char in enumerate(reversed(code)):
        state = _VERHOEFF_D[state][_VERHOEFF_P[position % 8][int(char)]]
    return state == 0


# --- Parsing ---------------------------------------------------------------------------------------


def _path(parts: Any) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _range(value: Any) -> Range:
    value = value or {}
    return Range(value.get("min"), value.get("max"))


def _check_range(item: Range, path: str) -> None:
    for bound in (item.min, item.max):
        if bound is not None and not math.isfinite(bound):
            raise DefinitionError(path, "bounds must be finite numbers.")
    if item.min is not None and item.max is not None and item.min > item.max:
        raise DefinitionError(path, "min is greater than max.")


def _unique(values: list[str], path: str, what: str) -> None:
    seen: set[str] = set()
    for index, value in enumerate(values):
        if value in seen:
            raise DefinitionError(f"{path}[{index}]", f"repeats the {what} {value!r}.")
        seen.add(value)


def _parse_finding(raw: dict[str, Any], path: str) -> Finding:
    value_type = raw["value_type"]
    hard, expected = _range(raw.get("hard_limits")), _range(raw.get("expected_range"))
    _check_range(hard, f"{path}.hard_limits")
    _check_range(expected, f"{path}.expected_range")
    for name, bound in (("min", expected.min), ("max", expected.max)):
        if bound is not None and not hard.contains(bound):
            raise DefinitionError(f"{path}.expected_range.{name}", "lies outside the hard limits.")
    unit = raw.get("unit") or ""
    if unit and not re.fullmatch(UCUM_PATTERN, unit):
        raise DefinitionError(f"{path}.unit", "must be a UCUM unit: printable ASCII, no spaces.")
    loinc = raw.get("loinc") or None
    if loinc is not None and not loinc_check_digit_ok(loinc):
        raise DefinitionError(f"{path}.loinc", f"{loinc!r} fails the LOINC check digit.")
    values = tuple((item["code"], item["display_name"]) for item in raw.get("values") or ())
    if value_type == "category":
        if not values:
            raise DefinitionError(f"{path}.values", "a category finding needs its values.")
        _unique([str(code) for code, _name in values], f"{path}.values", "code")
    elif values:
        raise DefinitionError(f"{path}.values", "only a category finding has values.")
    if value_type in ("boolean", "category") and (raw.get("hard_limits") or raw.get("expected_range")):
        raise DefinitionError(path, f"a {value_type} finding has no ranges.")
    return Finding(
        key=raw["key"],
        display_name=raw["display_name"],
        value_type=value_type,
        unit=unit,
        loinc=loinc,
        description=raw.get("description") or "",
        values=values,
        hard_limits=hard,
        expected_range=expected,
        used_by_model=raw.get("used_by_model", True),
    )


def parse_definition(raw: Any) -> Definition:
    """Check a definition (JSON) and parse it. Raises ``DefinitionError`` at the first problem."""
    errors = sorted(_VALIDATOR.iter_errors(raw), key=lambda error: list(error.absolute_path))
    if errors:
        error = errors[0]
        raise DefinitionError(_path(error.absolute_path), error.message)
    findings = tuple(_parse_finding(item, f"findings[{index}]") for index, item in enumerate(raw["findings"]))
    _unique([item.key for item in findings], "findings", "key")
    for index, item in enumerate(findings):
        if item.value_type == "boolean" and item.unit:
            raise DefinitionError(f"findings[{index}].unit", "a boolean finding has no unit.")
    symptoms = tuple(Symptom(item["key"], item["display_name"], item.get("snomed_ct")) for item in raw["symptoms"])
    _unique([item.key for item in symptoms], "symptoms", "key")
    for index, symptom in enumerate(symptoms):
        if symptom.snomed_ct and not snomed_check_digit_ok(symptom.snomed_ct):
            raise DefinitionError(f"symptoms[{index}].snomed_ct", f"{symptom.snomed_ct!r} fails the Verhoeff check.")
    diagnoses = tuple(Diagnosis(item["code"], item["display_name"]) for item in raw["diagnoses"])
    _unique([item.code for item in diagnoses], "diagnoses", "code")
    demographics = raw["demographics"]
    return Definition(findings, symptoms, diagnoses, uses_age=demographics["age"], uses_sex=demographics["sex"])


def canonical_json(raw: Any) -> str:
    return json.dumps(raw, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def definition_sha256(raw: Any) -> str:
    """Equal definitions, equal hashes: a load of an unchanged file makes no new version."""
    return hashlib.sha256(canonical_json(raw).encode()).hexdigest()
