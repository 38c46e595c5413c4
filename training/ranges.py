"""The train split's range of every numeric model input: what predict's ``out_of_range`` compares with.

``training_ranges(columns, numeric_features)`` is the min and max of each numeric feature (``age``,
``finding:<key>``) over the rows of a split that have a usable value (NaN, i.e. missing, left out:
the imputer fills those with the median, which lies within the range anyway), keyed as a prediction
record names the field: ``"age"``, ``"findings.<key>"``. A feature no row has a value for gets no
range. The worker measures it on the train split it fits on (``training.trainer``); an uploaded
artifact's is measured on its snapshot's train split (``snapshot_training_ranges``). The model
version keeps it (``ModelVersion.training_ranges``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from training.features import AGE, FINDING_PREFIX, RowColumns, columns_of, model_inputs

Ranges = dict[str, dict[str, float]]


def field_of(feature: str) -> str | None:
    """The record field a numeric feature comes from (``age``, ``findings.<key>``), else None."""
    if feature == AGE:
        return AGE
    if feature.startswith(FINDING_PREFIX):
        return "findings." + feature.removeprefix(FINDING_PREFIX)
    return None


def _range(values: np.ndarray) -> dict[str, float] | None:
    usable = values[~np.isnan(values)]
    if not len(usable):
        return None
    return {"min": float(usable.min()), "max": float(usable.max())}


def training_ranges(columns: RowColumns, numeric_features: list[str]) -> Ranges:
    """``{field: {"min": x, "max": y}}`` over ``columns`` (a split), for each of ``numeric_features``."""
    ranges: Ranges = {}
    findings = columns.findings
    values = findings.values if findings.values is not None else np.zeros(0)
    key_codes = {str(key): code for code, key in enumerate(findings.keys.values)}
    for feature in numeric_features:
        field = field_of(feature)
        if field is None:
            continue
        if feature == AGE:
            found = _range(np.asarray(columns.age, dtype=np.float64))
        else:
            code = key_codes.get(feature.removeprefix(FINDING_PREFIX))
            found = None if code is None else _range(values[findings.keys.codes == code].astype(np.float64))
        if found is not None:
            ranges[field] = found
    return ranges


def snapshot_training_ranges(snapshot: Any) -> Ranges:
    """``training_ranges`` of a ready snapshot's train split, for the numeric features the built-in
    trainer would take from it: the inputs its dictionary version's models use
    (``training.features.model_inputs``), so a cohort whose models leave age out gets no age range
    and predict no age warning ({} when the split is missing or empty).

    Raises what ``read_rows_by_split`` raises (a changed or missing file).
    """
    from training.dataset_format import read_rows_by_split

    train = read_rows_by_split(snapshot).get("train")
    if train is None or not len(train):
        return {}
    columns = columns_of(train)
    inputs = model_inputs(snapshot.model_type.cohort, snapshot=snapshot)
    return training_ranges(columns, columns.numeric_feature_names(inputs))


def usable_ranges(stored: Any) -> Ranges:
    """The entries of stored training ranges that are two finite numbers with min <= max, as
    floats; anything else is left out. What predict compares with and the API shows: the stored JSON
    is not trusted (jsonb gives a stored 1e400 back as an integer no float holds)."""
    usable: Ranges = {}
    for name, bounds in (stored if isinstance(stored, dict) else {}).items():
        low, high = (bounds.get("min"), bounds.get("max")) if isinstance(bounds, dict) else (None, None)
        numbers = [_finite(low), _finite(high)]
        if numbers[0] is not None and numbers[1] is not None and numbers[0] <= numbers[1]:
            usable[str(name)] = {"min": numbers[0], "max": numbers[1]}
    return usable


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None
