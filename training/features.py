"""Features of a case for the trainer: one dict per dataset row, for sklearn's ``DictVectorizer``.

Input is a dataset row (``training.dataset_format`` shape: de-identified fields only), so the
same function featurises training data and, through ``row_from_record``, a de-identified record
sent for prediction. Feature names:

- ``age`` and ``finding:<key>``: numeric. The names come from the training split
  (``numeric_feature_names``) and every row carries all of them: an absent value is written as
  NaN, never 0, so the pipeline's ``SimpleImputer(strategy="median")`` fills it with the training
  median. (A 0 would silently claim "temperature 0 degrees".)
- ``symptom:<name>``: multi-hot, 1.0 when present; absent means "not reported", which is 0.
- ``sex=<value>`` and ``age_band=<band>``: one-hot; a missing band is its own category.

Numeric findings unknown to the training split are dropped here (the model has no column for
them); unknown symptoms or categories are dropped by the vectorizer at transform time.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

AGE = "age"
FINDING_PREFIX = "finding:"
SYMPTOM_PREFIX = "symptom:"
OLDEST_AGE = 90  # the "90+" band's stand-in value, as in the dataset file
UNKNOWN = "unknown"


def _findings_of(row: Mapping[str, Any]) -> dict[str, Any]:
    """A row's findings as a dict: Parquet maps read back as lists of (key, value) pairs."""
    return dict(row.get("findings") or {})


def _number(value: Any) -> float:
    """A finite float, or NaN for anything missing or unusable (imputed later)."""
    if value is None or isinstance(value, bool):
        return math.nan
    try:
        number = float(value)
    except (TypeError, ValueError):
        return math.nan
    return number if math.isfinite(number) else math.nan


def _age_of(row: Mapping[str, Any]) -> Any:
    age = row.get("age")
    return OLDEST_AGE if age == "90+" else age


def numeric_feature_names(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """The numeric features of a training split: ``age`` and every finding seen, sorted."""
    keys: set[str] = set()
    for row in rows:
        keys.update(str(key) for key in _findings_of(row))
    return [AGE, *(FINDING_PREFIX + key for key in sorted(keys))]


def features(row: Mapping[str, Any], numeric_features: list[str]) -> dict[str, float]:
    """One row's feature dict. Every name in ``numeric_features`` is present (NaN when missing)."""
    findings = _findings_of(row)
    result: dict[str, float] = {}
    for name in numeric_features:
        if name == AGE:
            result[name] = _number(_age_of(row))
        elif name.startswith(FINDING_PREFIX):
            result[name] = _number(findings.get(name.removeprefix(FINDING_PREFIX)))
    for symptom in row.get("symptoms") or ():
        text = str(symptom).strip().lower()
        if text:
            result[SYMPTOM_PREFIX + text] = 1.0
    result[f"sex={str(row.get('sex') or UNKNOWN).strip().lower()}"] = 1.0
    result[f"age_band={row.get('age_band') or UNKNOWN}"] = 1.0
    return result


def feature_dicts(rows: Iterable[Mapping[str, Any]], numeric_features: list[str]) -> list[dict[str, float]]:
    return [features(row, numeric_features) for row in rows]


def labels(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    return [str(row["label"]) for row in rows]


def row_from_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """A de-identified record (``cases.deid.deidentify``'s shape) as a dataset-shaped row.

    For serving: a prediction request carries a de-identified record, possibly without a
    diagnosis (that is what is being predicted), so the label is optional here.
    """
    diagnosis = record.get("diagnosis") or {}
    return {
        "case_id": record.get("case_id"),
        "patient_pseudonym": record.get("patient_pseudonym"),
        "label": diagnosis.get("code") if isinstance(diagnosis, Mapping) else None,
        "age": _age_of(record),
        "age_band": record.get("age_band"),
        "sex": record.get("sex") or UNKNOWN,
        "encounter_year": record.get("encounter_year"),
        "findings": dict(record.get("findings") or {}),
        "symptoms": list(record.get("symptoms") or []),
    }
