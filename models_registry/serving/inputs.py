"""Prediction input: what a prediction record becomes before a model sees it.

``prediction_input`` is the one place a prediction record becomes what the model sees: the
de-identified row of the columns a model reads (``cases.rows.model_row``) and the sha256 of its
canonical JSON, which the prediction log keeps instead of the record. A record is either

- a case interchange record with a ``patient`` block: it is de-identified by
  ``cases.deid.records.deidentify`` exactly as an approved case is (age at the encounter, "90+" above 89,
  scrubbed symptoms), with today as the encounter date when it has none. ``patient.mrn`` is
  required, as everywhere in the interchange format; ``source``, ``external_id`` and ``cohort``
  are not needed and are ignored, as are ``note``, ``diagnosis`` and unknown keys; or
- only ``findings``, ``symptoms``, ``age`` (years, or "90+") and ``sex``: the same row built
  directly, with the same rules (ages above 89 become "90+", symptoms scrubbed).

Findings must be numbers and symptoms strings (``cases.interchange``'s own checks): a bad type is
a ``RecordError`` naming the field, never echoing the value.

The data dictionary
-------------------
Each record is checked against the data dictionary version (``cases.dictionary``) that the arm's
model version was trained under (``ModelVersion.dictionary``; ``DictionaryCheck``) before the model
sees it, after the arm is chosen: in an A/B test each arm checks against its own version. A version
that recorded none (its cohort had no published dictionary when it was registered) is checked
against the cohort's current version, if there is one now:

- a findings or symptom key the dictionary does not define: ``unknown_findings``, each named by its
  position, never its text (a key may itself be an identifier);
- a value of the wrong type or outside the finding's hard limits: the dictionary's code
  (``invalid_value``, ``outside_hard_limits``), naming the finding, never the value;
- a model input (a finding marked ``used_by_model``) missing: ``missing_findings``, listing them,
  unless the record says ``"allow_missing": true``; the model then imputes them (the training
  median), and the answer lists them (``imputed``) with the share of model inputs present
  (``completeness``). Even then at least ``MIN_COMPLETENESS`` of the inputs, and never fewer than
  one, must be present (``too_few_findings``): an empty record is never answered with a diagnosis;
- a value outside the range the version saw in training (``ModelVersion.training_ranges``, the train
  split's min and max per numeric input, ``"basis": "training_range"``), or, for a version that
  recorded none, outside the dictionary's expected range (``"basis": "expected_range"``): answered,
  with an ``out_of_range`` warning.

The answer names the diagnosis as the version's dictionary does (``display_name``). A version's
check is built when its model is loaded and kept with it (``models_registry.serving.model_cache``); the
fallback for versions without one is read once per routing table, i.e. once per serving generation,
and publishing a version bumps the generation: a warm predict adds no query. Without any dictionary
(the test cohorts of the suite) a record is served as before.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.utils import timezone

from cases.deid import records, safe_harbor, scrubbing
from cases.dictionary.units import with_unit
from cases.interchange import (
    SEXES,
    CaseRecord,
    RecordError,
    parse_date,
    parse_findings,
    parse_patient,
    parse_symptoms,
)
from cases.quality import MAX_AGE_YEARS
from cases.rows import UNKNOWN as UNKNOWN_SEX
from cases.rows import model_row

if TYPE_CHECKING:
    from cases.dictionary.definition import Definition, Finding
    from cases.dictionary.models import DataDictionary
    from models_registry.serving.router import RoutingTable

logger = logging.getLogger(__name__)

# The "source" of a record that is only de-identified for a prediction (it feeds the patient
# pseudonym, which a prediction never keeps).
PREDICTION_SOURCE = "prediction"
# The fixed "source" under which subject keys are pseudonymised (``cases.deid.safe_harbor.pseudonym``).
SUBJECT_SOURCE = "subject"
SUBJECT_KEY = "subject_key"
MAX_SUBJECT_KEY_LENGTH = 200
# Canonical JSON: sorted keys, no spaces (one encoder, not one per record).
_CANONICAL_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class PredictionInput:
    """One record as the model sees it. ``subject_pseudonym`` is "" without a subject key.
    ``checked``: what the dictionary check adds to the answer (empty without a dictionary).
    ``findings``, ``symptoms`` and ``allow_missing``: the parsed record, for that check (``check``),
    which waits until the arm, hence the dictionary version, is known; kept for the request only."""

    row: dict[str, Any]
    input_sha256: str
    subject_pseudonym: str
    checked: dict[str, Any] = field(default_factory=dict)
    findings: dict[str, float] = field(default_factory=dict)
    symptoms: list[str] = field(default_factory=list)
    allow_missing: bool = False

    def check(self, check: DictionaryCheck) -> PredictionInput:
        """This input checked against ``check`` (a copy with ``checked``); raises ``RecordRefused``."""
        age = self.row.get("age")
        return replace(
            self,
            checked=check.check(
                self.findings,
                self.symptoms,
                allow_missing=self.allow_missing,
                age=age if isinstance(age, (int, float)) and not isinstance(age, bool) else None,
                sex=self.row.get("sex"),
            ),
        )


# With "allow_missing": true, at least this share of a cohort's model inputs must be present (and
# never fewer than one): below it the answer would be mostly the training medians.
MIN_COMPLETENESS = 0.5
ALLOW_MISSING = "allow_missing"


class RecordRefused(RecordError):
    """A record the dictionary refuses: a ``RecordError`` with its own code and details.
    ``index``: the record's position in its request, set by ``serve`` (None before)."""

    def __init__(self, field_name: str, message: str, *, code: str, **extra: Any) -> None:
        super().__init__(field_name, message)
        self.code = code
        self.extra = extra
        self.index: int | None = None


# What an out_of_range warning compared the value with (its "basis").
TRAINING_RANGE = "training_range"
EXPECTED_RANGE = "expected_range"
RANGE_BASES = (TRAINING_RANGE, EXPECTED_RANGE)


@dataclass(frozen=True, slots=True)
class DictionaryCheck:
    """A dictionary version, as predict checks records against it for one model version (or, for
    versions that recorded none, the cohort's current version). ``training_ranges``: the model
    version's ``{field: (min, max)}`` of its train split; empty, the expected ranges stand in."""

    dictionary_id: int
    cohort: str
    version: int
    definition: Definition
    model_findings: tuple[str, ...]
    training_ranges: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    # Lookups made once per version (``Definition.finding`` builds its index on every call).
    findings: Mapping[str, Finding] = field(default_factory=dict)
    symptom_keys: frozenset[str] = frozenset()
    diagnosis_names: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, dictionary: DataDictionary, training_ranges: Any = None) -> DictionaryCheck:
        """The check of a dictionary version (its cohort read with it), with a model version's
        ``training_ranges`` as stored (``{field: {"min": x, "max": y}}``; unusable entries left out)."""
        definition = dictionary.parsed
        from training.ranges import usable_ranges

        ranges = {name: (bounds["min"], bounds["max"]) for name, bounds in usable_ranges(training_ranges).items()}
        return cls(
            dictionary_id=dictionary.pk,
            cohort=dictionary.cohort.slug,
            version=dictionary.version,
            definition=definition,
            model_findings=definition.model_findings,
            training_ranges=ranges,
            findings={finding.key: finding for finding in definition.findings},
            symptom_keys=definition.symptom_keys,
            diagnosis_names={item.code: item.display_name for item in definition.diagnoses},
        )

    def reading(self, finding_keys: Iterable[str]) -> DictionaryCheck:
        """This check for a model whose artifact reads ``finding_keys``: a finding of the dictionary
        the artifact takes as an input is required (or imputed with ``allow_missing``) whatever the
        dictionary marks, else the model would impute it without a word (an upload trained on every
        finding of its snapshot's file; a version trained before its dictionary said otherwise)."""
        extra = {key for key in finding_keys if key in self.findings} - set(self.model_findings)
        if not extra:
            return self
        keys = tuple(item.key for item in self.definition.findings if item.used_by_model or item.key in extra)
        return replace(self, model_findings=keys)

    def diagnosis_name(self, code: str) -> str | None:
        """The display name of a diagnosis code in this version's code set (None outside it)."""
        return self.diagnosis_names.get(code) or None

    def _refused(self, field_name: str, message: str, *, code: str, **extra: Any) -> RecordRefused:
        return RecordRefused(
            field_name, message, code=code, **extra, cohort=self.cohort, dictionary_version=self.version
        )

    def _outside_training_range(self, field_name: str, name: str, unit: str, value: float) -> dict[str, Any] | None:
        bounds = self.training_ranges.get(field_name)
        if bounds is None or bounds[0] <= value <= bounds[1]:
            return None
        return {
            "code": "out_of_range",
            "field": field_name,
            "basis": TRAINING_RANGE,
            # The range, never the value sent (as every dictionary message).
            "message": f"{name} is outside the range this model version was trained on "
            f"({with_unit(f'{bounds[0]:g} to {bounds[1]:g}', unit)}).",
        }

    def check(
        self,
        findings: dict[str, float],
        symptoms: list[str],
        *,
        allow_missing: bool,
        age: float | None = None,
        sex: str | None = None,
    ) -> dict[str, Any]:
        """What the answer adds (version, completeness, imputed, warnings); raises ``RecordRefused``.

        ``age``: the record's age in years (90 for "90+"), warned about against the training range.
        ``sex``: the record's (None or "unknown": none), for a version whose model reads no finding.
        """
        from cases.dictionary.validation import check_finding_value

        known_findings = self.findings
        unknown: list[dict[str, Any]] = [
            {"field": "findings", "position": position}
            for position, key in enumerate(findings)
            if key not in known_findings
        ]
        known_symptoms = self.symptom_keys
        unknown += [
            {"field": "symptoms", "position": position}
            for position, key in enumerate(symptoms)
            if key not in known_symptoms
        ]
        if unknown:
            where = ", ".join(f"{item['field']} entry {item['position'] + 1}" for item in unknown)
            raise self._refused(
                unknown[0]["field"],
                f"Not in the {self.cohort} data dictionary (version {self.version}): {where}.",
                code="unknown_findings",
                unknown=unknown,
            )
        warnings = []
        by_training = bool(self.training_ranges)
        for key, value in findings.items():
            finding = known_findings[key]  # unknown keys were refused above
            error, quality = check_finding_value(finding, value)
            if error is not None:
                raise self._refused(error.field, error.message, code=error.code)
            if by_training:
                warning = self._outside_training_range(f"findings.{key}", finding.display_name, finding.unit, value)
                if warning is not None:
                    warnings.append(warning)
            elif quality is not None:
                warnings.append(
                    {
                        "code": "out_of_range",
                        "field": quality.field,
                        "basis": EXPECTED_RANGE,
                        "message": quality.message,
                    }
                )
        if by_training and age is not None:
            warning = self._outside_training_range("age", "Age", "years", age)
            if warning is not None:
                warnings.append(warning)
        missing = [key for key in self.model_findings if key not in findings]
        total = len(self.model_findings)
        completeness = round((total - len(missing)) / total, 4) if total else 1.0
        if missing and not allow_missing:
            raise self._refused(
                "findings",
                f"{len(missing)} of the model's {total} input findings are missing: {', '.join(missing)}. "
                'Send them, or send "allow_missing": true to have them imputed.',
                code="missing_findings",
                missing=missing,
                completeness=completeness,
            )
        if total and (total - len(missing) < max(1, math.ceil(MIN_COMPLETENESS * total))):
            raise self._refused(
                "findings",
                f"Only {total - len(missing)} of the model's {total} input findings are present; at least "
                f"{max(1, math.ceil(MIN_COMPLETENESS * total))} are needed even with allow_missing.",
                code="too_few_findings",
                missing=missing,
                completeness=completeness,
            )
        given_sex = sex is not None and sex != UNKNOWN_SEX
        if not total and not (
            symptoms or (age is not None and self.definition.uses_age) or (given_sex and self.definition.uses_sex)
        ):
            # No finding is a model input: the symptoms and demographics are all the model reads,
            # and an empty record is never answered with a diagnosis.
            raise self._refused(
                "findings",
                "The record holds none of the model's inputs (its symptoms, or the age or sex it reads).",
                code="too_few_findings",
                missing=[],
                completeness=0.0,
            )
        return {
            "dictionary_version": self.version,
            "completeness": completeness,
            "imputed": missing,
            "warnings": warnings,
        }


# Checks by dictionary version id: a published version never changes, so its check never does.
# For versions that recorded no dictionary only (``dictionary_check``); a version's own check lives
# with its loaded model (``models_registry.serving.model_cache``).
_CHECKS: dict[int, DictionaryCheck] = {}


def dictionary_check(table: RoutingTable, cohort: str) -> DictionaryCheck | None:
    """The check of ``cohort``'s current published version, or None when it has none: what a model
    version that recorded no dictionary version is checked against.

    One query per routing table (per serving generation) and cohort, and only when such a version
    serves; none in the steady state.
    """
    try:
        return table.dictionaries[cohort]  # type: ignore[no-any-return]
    except KeyError:
        pass
    from cases.dictionary.checking import current_dictionary

    dictionary = current_dictionary(cohort)
    check = None
    if dictionary is not None:
        check = _CHECKS.get(dictionary.pk)
        if check is None:
            check = _CHECKS[dictionary.pk] = DictionaryCheck.of(dictionary)
    table.dictionaries[cohort] = check
    return check


def prediction_input(obj: Any, check: DictionaryCheck | None = None, *, allow_missing: bool = False) -> PredictionInput:
    """A prediction record (see the module docstring) -> its de-identified row, hash and subject.

    ``allow_missing``: the batch's default for records without their own ``allow_missing``. With
    ``check``, the record must also fit that dictionary check (``serve`` checks each record against
    its arm's instead). Raises ``RecordError`` naming the first bad field.
    """
    if not isinstance(obj, dict):
        raise RecordError("", "A record must be a JSON object.")
    findings = parse_findings(obj.get("findings"))
    symptoms = parse_symptoms(obj.get("symptoms"))
    if obj.get("patient") is not None:
        row = _row_from_patient_record(obj, findings, symptoms)
    else:
        row = _row_from_features(obj, findings, symptoms)
    subject = subject_pseudonym(obj.get(SUBJECT_KEY))
    allow = obj.get(ALLOW_MISSING, allow_missing)
    if not isinstance(allow, bool):
        raise RecordError(ALLOW_MISSING, "must be true or false.")
    item = PredictionInput(
        row=row,
        input_sha256=hashlib.sha256(_CANONICAL_JSON.encode(row).encode()).hexdigest(),
        subject_pseudonym=subject,
        findings=findings,
        symptoms=symptoms,
        allow_missing=allow,
    )
    # After the record's own checks, so a bad type is named as such whatever the dictionary says.
    # Serving checks in ``serve``, once the arm (and so the dictionary version) is known.
    return item.check(check) if check is not None else item


def subject_pseudonym(value: Any) -> str:
    """HMAC of a subject key (an encounter id, say) under the pseudonym key; "" for none."""
    if value is None or value == "":
        return ""
    if not isinstance(value, str) or len(value) > MAX_SUBJECT_KEY_LENGTH or not value.strip():
        raise RecordError(SUBJECT_KEY, f"must be a non-blank string of at most {MAX_SUBJECT_KEY_LENGTH} characters.")
    return safe_harbor.pseudonym(SUBJECT_SOURCE, value, key=settings.PSEUDONYM_KEY)


def _row_from_patient_record(obj: dict[str, Any], findings: dict[str, float], symptoms: list[str]) -> dict[str, Any]:
    encounter = parse_date(obj.get("encounter_date"), "encounter_date") or timezone.localdate()
    record = CaseRecord(
        source=PREDICTION_SOURCE,
        external_id="",
        cohort="",
        patient=parse_patient(obj["patient"]),
        encounter_date=encounter,
        findings=findings,
        symptoms=symptoms,
        note="",  # never read: no model reads text, and it is where identifiers hide
        diagnosis_code="",
        diagnosis_label="",
    )
    # Only what the model reads: the patient pseudonym and the year are not kept, even in memory.
    return model_row(records.deidentify(record, key=settings.PSEUDONYM_KEY))


def _row_from_features(obj: dict[str, Any], findings: dict[str, float], symptoms: list[str]) -> dict[str, Any]:
    age, band = _age(obj.get("age"))
    sex = obj.get("sex")
    if sex is not None:
        if not isinstance(sex, str) or sex.strip().lower() not in SEXES:
            raise RecordError("sex", f"must be one of {', '.join(sorted(SEXES))}.")
        sex = sex.strip().lower()
    # The shape of a de-identified record's demographics, findings and symptoms.
    return model_row(
        {
            "age": age,
            "age_band": band,
            "sex": sex,
            "findings": findings,
            "symptoms": [_scrubbed(symptom) for symptom in symptoms],
        }
    )


def _age(value: Any) -> tuple[int | str | None, str | None]:
    """(age, band) as ``cases.deid`` reports them: whole years, "90+" above 89."""
    if value is None:
        return None, None
    if value == safe_harbor.OLDEST_BAND:
        return safe_harbor.OLDEST_BAND, safe_harbor.OLDEST_BAND
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        # The range first: math.isfinite(10**400) raises OverflowError (the parser refuses such
        # numbers already; this holds whatever parser a record came through).
        or not 0 <= value <= MAX_AGE_YEARS
        or not math.isfinite(value)
    ):
        raise RecordError(
            "age", f'must be a number of years from 0 to {MAX_AGE_YEARS}, or "{safe_harbor.OLDEST_BAND}".'
        )
    years = int(value)
    return (safe_harbor.OLDEST_BAND if years > safe_harbor.AGE_CEILING else years), safe_harbor.age_band(years)


# Symptoms already known to scrub to themselves. Only those are kept: a symptom in which the
# scrubber found an identifier is never held beyond its request.
_CLEAN_SYMPTOMS: set[str] = set()
_MAX_CLEAN_SYMPTOMS = 10_000


def _scrubbed(symptom: str) -> str:
    """A symptom scrubbed as de-identification scrubs one (the common, clean ones remembered)."""
    if symptom in _CLEAN_SYMPTOMS:
        return symptom
    scrubbed = scrubbing.scrub_text(symptom, {})
    if scrubbed == symptom and len(_CLEAN_SYMPTOMS) < _MAX_CLEAN_SYMPTOMS:
        _CLEAN_SYMPTOMS.add(symptom)
    return scrubbed
