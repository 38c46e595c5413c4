"""Serving: the generation counter that invalidates every process's routing, and prediction input.

The serving generation
----------------------
A counter in the shared cache that every activation change (and every start or end of an A/B
test) bumps. Each process keeps its routing
table (which version serves a model type, ``models_registry.router``) and its loaded models
(``models_registry.model_cache``) in memory, tagged with the generation it read. A request
compares the cached generation (a cache read, not a database query) with its own and reloads the
table when they differ, so an activation reaches every process within a request. With Redis as
the cache (``REDIS_URL``) this works across machines; the default file cache works across the
processes of one machine.

Prediction input
----------------
``prediction_input`` is the one place a prediction record becomes what the model sees: the
de-identified row of the columns a model reads (``cases.rows.model_row``) and the sha256 of its
canonical JSON, which the prediction log keeps instead of the record. A record is either

- a case interchange record with a ``patient`` block: it is de-identified by
  ``cases.deid.deidentify`` exactly as an approved case is (age at the encounter, "90+" above 89,
  scrubbed symptoms), with today as the encounter date when it has none. ``patient.mrn`` is
  required, as everywhere in the interchange format; ``source``, ``external_id`` and ``cohort``
  are not needed and are ignored, as are ``note``, ``diagnosis`` and unknown keys; or
- only ``findings``, ``symptoms``, ``age`` (years, or "90+") and ``sex``: the same row built
  directly, with the same rules (ages above 89 become "90+", symptoms scrubbed).

Findings must be numbers and symptoms strings (``cases.interchange``'s own checks): a bad type is
a ``RecordError`` naming the field, never echoing the value.

The data dictionary
-------------------
When the model type's cohort has a published data dictionary (``cases.dictionary``), each record is
checked against the current version (``DictionaryCheck``) before the model sees it:

- a findings or symptom key the dictionary does not define: ``unknown_findings``, each named by its
  position, never its text (a key may itself be an identifier);
- a value of the wrong type or outside the finding's hard limits: the dictionary's code
  (``invalid_value``, ``outside_hard_limits``), naming the finding, never the value;
- a model input (a finding marked ``used_by_model``) missing: ``missing_findings``, listing them,
  unless the record says ``"allow_missing": true``; the model then imputes them (the training
  median), and the answer lists them (``imputed``) with the share of model inputs present
  (``completeness``). Even then at least ``MIN_COMPLETENESS`` of the inputs, and never fewer than
  one, must be present (``too_few_findings``): an empty record is never answered with a diagnosis;
- a value outside the expected range: answered, with an ``out_of_range`` warning. The issue asks
  for the range of the version's training split; model versions do not record it yet, so the
  dictionary's expected range stands in (docs/data-dictionary.md).

A cohort without a published dictionary (the test cohorts of the suite) is served as before.
Which version is current is read once per routing table, i.e. once per serving generation, and
publishing a version bumps the generation: a warm predict adds no query.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

from cases import deid
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
from cases.rows import model_row

if TYPE_CHECKING:
    from cases.dictionary.definition import Definition
    from models_registry.router import RoutingTable

logger = logging.getLogger(__name__)

GENERATION_KEY = "models_registry:serving_generation"

# The "source" of a record that is only de-identified for a prediction (it feeds the patient
# pseudonym, which a prediction never keeps).
PREDICTION_SOURCE = "prediction"
# The fixed "source" under which subject keys are pseudonymised (``cases.deid.pseudonym``).
SUBJECT_SOURCE = "subject"
SUBJECT_KEY = "subject_key"
MAX_SUBJECT_KEY_LENGTH = 200
# Canonical JSON: sorted keys, no spaces (one encoder, not one per record).
_CANONICAL_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def current_generation() -> int:
    value = cache.get(GENERATION_KEY)
    if value is None:
        # First use, or the key was lost (a flush, an eviction): start from the clock, for the
        # reason ``bump_generation`` gives.
        restart = time.time_ns() // 1_000
        cache.add(GENERATION_KEY, restart, timeout=None)
        value = cache.get(GENERATION_KEY, restart)
    return int(value)


def bump_generation() -> int:
    """Called on commit of every activation change and every start or end of an A/B test."""
    try:
        return int(cache.incr(GENERATION_KEY))
    except ValueError:
        # The key is missing (a cache flush). Start again from the clock, not from a constant: a
        # process may still hold a table tagged with the value the counter had before the flush,
        # and must not find it again by coincidence (it would keep serving the old version).
        restart = time.time_ns() // 1_000  # microseconds: fits any cache's 64-bit counter
        cache.add(GENERATION_KEY, restart, timeout=None)
        return int(cache.get(GENERATION_KEY, restart))


# --- Prediction input --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PredictionInput:
    """One record as the model sees it. ``subject_pseudonym`` is "" without a subject key.
    ``checked``: what the dictionary check adds to the answer (empty without a dictionary)."""

    row: dict[str, Any]
    input_sha256: str
    subject_pseudonym: str
    checked: dict[str, Any] = field(default_factory=dict)


# With "allow_missing": true, at least this share of a cohort's model inputs must be present (and
# never fewer than one): below it the answer would be mostly the training medians.
MIN_COMPLETENESS = 0.5
ALLOW_MISSING = "allow_missing"


class RecordRefused(RecordError):
    """A record the dictionary refuses: a ``RecordError`` with its own code and details."""

    def __init__(self, field_name: str, message: str, *, code: str, **extra: Any) -> None:
        super().__init__(field_name, message)
        self.code = code
        self.extra = extra


@dataclass(frozen=True, slots=True)
class DictionaryCheck:
    """A published dictionary version, as predict checks records against it."""

    dictionary_id: int
    cohort: str
    version: int
    definition: Definition
    model_findings: tuple[str, ...]

    def check(self, findings: dict[str, float], symptoms: list[str], *, allow_missing: bool) -> dict[str, Any]:
        """What the answer adds (version, completeness, imputed, warnings); raises ``RecordRefused``."""
        from cases.dictionary.validation import check_finding_value

        definition = self.definition
        unknown: list[dict[str, Any]] = [
            {"field": "findings", "position": position}
            for position, key in enumerate(findings)
            if definition.finding(key) is None
        ]
        known_symptoms = definition.symptom_keys
        unknown += [
            {"field": "symptoms", "position": position}
            for position, key in enumerate(symptoms)
            if key not in known_symptoms
        ]
        if unknown:
            where = ", ".join(f"{item['field']} entry {item['position'] + 1}" for item in unknown)
            raise RecordRefused(
                unknown[0]["field"],
                f"Not in the {self.cohort} data dictionary (version {self.version}): {where}.",
                code="unknown_findings",
                unknown=unknown,
            )
        warnings = []
        for key, value in findings.items():
            error, quality = check_finding_value(definition.finding(key), value)  # type: ignore[arg-type]
            if error is not None:
                raise RecordRefused(error.field, error.message, code=error.code)
            if quality is not None:
                warnings.append({"code": "out_of_range", "field": quality.field, "message": quality.message})
        missing = [key for key in self.model_findings if key not in findings]
        total = len(self.model_findings)
        completeness = round((total - len(missing)) / total, 4) if total else 1.0
        if missing and not allow_missing:
            raise RecordRefused(
                "findings",
                f"{len(missing)} of the model's {total} input findings are missing: {', '.join(missing)}. "
                'Send them, or send "allow_missing": true to have them imputed.',
                code="missing_findings",
                missing=missing,
                completeness=completeness,
            )
        if total and (total - len(missing) < max(1, math.ceil(MIN_COMPLETENESS * total))):
            raise RecordRefused(
                "findings",
                f"Only {total - len(missing)} of the model's {total} input findings are present; at least "
                f"{max(1, math.ceil(MIN_COMPLETENESS * total))} are needed even with allow_missing.",
                code="too_few_findings",
                missing=missing,
                completeness=completeness,
            )
        return {
            "dictionary_version": self.version,
            "completeness": completeness,
            "imputed": missing,
            "warnings": warnings,
        }


# Checks by dictionary version id: a published version never changes, so its check never does.
_CHECKS: dict[int, DictionaryCheck] = {}


def dictionary_check(table: RoutingTable, cohort: str) -> DictionaryCheck | None:
    """The check of ``cohort``'s current published version, or None when it has none.

    One query per routing table (per serving generation) and cohort; none in the steady state.
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
            definition = dictionary.parsed
            check = DictionaryCheck(
                dictionary_id=dictionary.pk,
                cohort=cohort,
                version=dictionary.version,
                definition=definition,
                model_findings=definition.model_findings,
            )
            _CHECKS[dictionary.pk] = check
    table.dictionaries[cohort] = check
    return check


def prediction_input(obj: Any, check: DictionaryCheck | None = None, *, allow_missing: bool = False) -> PredictionInput:
    """A prediction record (see the module docstring) -> its de-identified row, hash and subject.

    With ``check``, the record must fit the dictionary (``allow_missing``: the batch's default for
    records without their own ``allow_missing``). Raises ``RecordError`` naming the first bad field.
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
    # After the record's own checks, so a bad type is named as such whatever the dictionary says.
    checked: dict[str, Any] = {}
    if check is not None:
        allow = obj.get(ALLOW_MISSING, allow_missing)
        if not isinstance(allow, bool):
            raise RecordError(ALLOW_MISSING, "must be true or false.")
        checked = check.check(findings, symptoms, allow_missing=allow)
    return PredictionInput(
        row=row,
        input_sha256=hashlib.sha256(_CANONICAL_JSON.encode(row).encode()).hexdigest(),
        subject_pseudonym=subject,
        checked=checked,
    )


def subject_pseudonym(value: Any) -> str:
    """HMAC of a subject key (an encounter id, say) under the pseudonym key; "" for none."""
    if value is None or value == "":
        return ""
    if not isinstance(value, str) or len(value) > MAX_SUBJECT_KEY_LENGTH or not value.strip():
        raise RecordError(SUBJECT_KEY, f"must be a non-blank string of at most {MAX_SUBJECT_KEY_LENGTH} characters.")
    return deid.pseudonym(SUBJECT_SOURCE, value, key=settings.PSEUDONYM_KEY)


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
    return model_row(deid.deidentify(record, key=settings.PSEUDONYM_KEY))


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
    if value == deid.OLDEST_BAND:
        return deid.OLDEST_BAND, deid.OLDEST_BAND
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        # The range first: math.isfinite(10**400) raises OverflowError (the parser refuses such
        # numbers already; this holds whatever parser a record came through).
        or not 0 <= value <= MAX_AGE_YEARS
        or not math.isfinite(value)
    ):
        raise RecordError("age", f'must be a number of years from 0 to {MAX_AGE_YEARS}, or "{deid.OLDEST_BAND}".')
    years = int(value)
    return (deid.OLDEST_BAND if years > deid.AGE_CEILING else years), deid.age_band(years)


# Symptoms already known to scrub to themselves. Only those are kept: a symptom in which the
# scrubber found an identifier is never held beyond its request.
_CLEAN_SYMPTOMS: set[str] = set()
_MAX_CLEAN_SYMPTOMS = 10_000


def _scrubbed(symptom: str) -> str:
    """A symptom scrubbed as de-identification scrubs one (the common, clean ones remembered)."""
    if symptom in _CLEAN_SYMPTOMS:
        return symptom
    scrubbed = deid.scrub_text(symptom, {})
    if scrubbed == symptom and len(_CLEAN_SYMPTOMS) < _MAX_CLEAN_SYMPTOMS:
        _CLEAN_SYMPTOMS.add(symptom)
    return scrubbed


# --- Answering ---------------------------------------------------------------------------------


def serve(route: Any, inputs: list[PredictionInput], *, by: Any, started: float) -> list[dict[str, Any]]:
    """Predict ``inputs`` with ``route``'s arms, log one ``Prediction`` each, return the answers.

    ``started`` is the request's ``time.perf_counter()`` at entry: the logged latency runs from
    there to the probabilities (for a batch, divided by its size). One INSERT for the whole batch
    (``PredictionQuerySet.log``). In a shadow test, B then predicts the same inputs and its rows
    are logged in a second INSERT, pointing at the answered ones; the answers are A's alone.
    """
    from models_registry.model_cache import MODEL_CACHE
    from models_registry.models import Prediction

    by_arm: dict[Any, list[int]] = {}
    for index, item in enumerate(inputs):
        by_arm.setdefault(route.choose(subject=item.subject_pseudonym), []).append(index)

    now = timezone.now()
    rows: list[tuple[Any, ...]] = [()] * len(inputs)
    answers: list[dict[str, Any]] = [{}] * len(inputs)
    for arm, indices in by_arm.items():
        model = MODEL_CACHE.get(arm)
        probabilities = model.probabilities([inputs[i].row for i in indices])
        latency_ms = (time.perf_counter() - started) * 1000 / len(indices)
        best = probabilities.argmax(axis=1).tolist()
        classes, arm_name = model.classes, arm.name or None
        for index, row_best, row_probabilities in zip(indices, best, probabilities.tolist(), strict=True):
            code = classes[row_best]
            by_class = dict(zip(classes, row_probabilities, strict=True))
            item = inputs[index]
            rows[index] = _log_row(route, arm, item, code, by_class, latency_ms, by=by, now=now)
            answers[index] = {
                "model_type": route.slug,
                "model_version": arm.version,
                "arm": arm_name,
                "diagnosis": {"code": code, "label": model.label(code)},
                "probabilities": by_class,
                **item.checked,
            }
    ids = Prediction.objects.log(rows)
    shadow = route.shadow
    if shadow is not None:
        _predict_in_shadow(route, shadow, inputs, ids, by=by, now=now)
    return [{"id": pk, **answer} for pk, answer in zip(ids, answers, strict=True)]


def _log_row(
    route: Any,
    arm: Any,
    item: PredictionInput,
    code: str,
    by_class: dict[str, float],
    latency_ms: float,
    *,
    by: Any,
    now: Any,
    shadow_of: int | None = None,
) -> tuple[Any, ...]:
    """One row of the prediction log, in ``LOG_COLUMNS`` order."""
    return (
        route.model_type_id,
        arm.version_id,
        arm.name,
        arm.ab_test_id,
        shadow_of,
        item.subject_pseudonym,
        item.input_sha256,
        code,
        by_class,
        latency_ms,
        by.pk,
        now,
    )


def _predict_in_shadow(
    route: Any, arm: Any, inputs: list[PredictionInput], answered: list[int], *, by: Any, now: Any
) -> None:
    """B's silent predictions of the answered inputs: logged, compared later, never returned.

    Best effort: the answers are A's and are already logged, so a failure here (B's artifact
    refused, say) costs the comparison of these requests, never the answers.
    """
    from models_registry.model_cache import MODEL_CACHE
    from models_registry.models import Prediction

    try:
        started = time.perf_counter()
        model = MODEL_CACHE.get(arm)
        probabilities = model.probabilities([item.row for item in inputs])
        latency_ms = (time.perf_counter() - started) * 1000 / len(inputs)
        best = probabilities.argmax(axis=1).tolist()
        rows = [
            _log_row(
                route,
                arm,
                item,
                model.classes[row_best],
                dict(zip(model.classes, row_probabilities, strict=True)),
                latency_ms,
                by=by,
                now=now,
                shadow_of=answered_id,
            )
            for item, answered_id, row_best, row_probabilities in zip(
                inputs, answered, best, probabilities.tolist(), strict=True
            )
        ]
        Prediction.objects.log(rows)
    except Exception:
        logger.exception("Shadow predictions of %s %s failed; the answers were given.", route.slug, arm.version)


def feedback_case_record(
    raw: dict[str, Any], *, cohort: str, diagnosis_code: str, source: str | None = None
) -> CaseRecord:
    """The case sent with feedback, parsed: cohort defaults to the model type's, the diagnosis
    code to the confirmed one, the source to the sender's bound one (``ClientSource``). Raises
    ``RecordError`` (its field prefixed with ``case.``)."""
    from cases.interchange import parse_record

    obj = dict(raw)
    obj.setdefault("cohort", cohort)
    diagnosis = obj.get("diagnosis")
    if diagnosis is None:
        obj["diagnosis"] = {"code": diagnosis_code}
    elif isinstance(diagnosis, dict) and not diagnosis.get("code"):
        obj["diagnosis"] = {**diagnosis, "code": diagnosis_code}
    try:
        return parse_record(obj, default_source=source)
    except RecordError as exc:
        raise RecordError(f"case.{exc.field}" if exc.field else "case", exc.message) from None
