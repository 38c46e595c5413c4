"""Input profiles: the training split's binned distribution of each model input, and live tallies.

A version's **reference** (``reference_of``) is recorded once, from its snapshot's train split: per
feature of its data dictionary (numeric findings and age: quantile bins; category and boolean
findings, sex, each symptom's presence: categories), the row counts per bin and the missing count.
Live inputs are **tallied** with the same bins (``Tally``): per feature, counts per bin, missing,
and outside the dictionary's expected range. Nothing here keeps a value: a reference holds bin
edges (deciles of de-identified training values) and counts; a tally holds counts only, so a
stored tally cannot be traced back to one record's values.

Feature names follow ``ModelVersion.training_ranges``: ``age``, ``sex``, ``findings.<key>``,
``symptoms.<key>``. The reference's JSON (``REFERENCE_FORMAT``)::

    {"format": 1, "train_size": 1200, "features": {
        "age": {"kind": "numeric", "edges": [...9 cut points], "counts": [...10], "missing": 0,
                "expected_range": [null, null]},
        "sex": {"kind": "category", "categories": ["female", "male", "unknown"], "counts": [...], "missing": 0},
        ...}}

Bins are right-closed: bin ``i`` holds ``edges[i-1] < x <= edges[i]`` (``numpy.searchsorted`` on
the left), the first and last open-ended. Repeated quantiles (an integer input, a spike) collapse
into one edge, so a feature may have fewer than ``QUANTILE_BINS`` bins.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from cases.rows import UNKNOWN, age_value

if TYPE_CHECKING:
    from cases.dictionary.definition import Definition

REFERENCE_FORMAT = 1
QUANTILE_BINS = 10
NUMERIC, CATEGORY = "numeric", "category"
PRESENT, ABSENT = "present", "absent"
# A live category the reference never saw (a new sex code, a new category value) counts here.
OTHER = "other"


@dataclass(frozen=True, slots=True)
class Feature:
    """One model input as monitoring sees it. ``edges`` / ``categories``: the reference's bins
    (empty without a reference); ``expected``: the dictionary's expected range (None: open)."""

    name: str
    kind: str
    edges: tuple[float, ...] = ()
    categories: tuple[str, ...] = ()
    expected: tuple[float | None, float | None] = (None, None)

    @property
    def has_expected_range(self) -> bool:
        return self.expected != (None, None)


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def _category(value: Any) -> str | None:
    """A category value as text: booleans lower-case, whole numbers without ``.0``."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    number = _number(value)
    if number is not None:
        return str(int(number)) if number.is_integer() else f"{number:g}"
    return str(value).strip().lower() or None


def _symptoms(row: Mapping[str, Any]) -> frozenset[str]:
    return frozenset(str(item).strip().lower() for item in row.get("symptoms") or ())


# Where a feature's value is in a row, by its name: (one of these, the key in that part).
_AGE, _SEX, _SYMPTOM, _FINDING = range(4)


@functools.lru_cache(maxsize=4096)
def _where(name: str) -> tuple[int, str]:
    if name == "age":
        return _AGE, ""
    if name == "sex":
        return _SEX, ""
    if name.startswith("symptoms."):
        return _SYMPTOM, name.removeprefix("symptoms.")
    return _FINDING, name.removeprefix("findings.")


def _findings(row: Mapping[str, Any]) -> Mapping[str, Any]:
    findings = row.get("findings") or {}
    if not isinstance(findings, Mapping):
        findings = dict(findings)  # a Parquet map reads back as (key, value) pairs
    return findings


def value_of(
    feature: Feature,
    row: Mapping[str, Any],
    symptoms: frozenset[str] | None = None,
    findings: Mapping[str, Any] | None = None,
) -> Any:
    """The feature's value in a row (``cases.rows.model_row`` or a dataset row); None when missing.
    ``symptoms`` and ``findings``: the row's, when the caller reads several features of it."""
    where, key = _where(feature.name)
    if where == _AGE:
        return _number(age_value(row.get("age")))
    if where == _SEX:
        return _category(row.get("sex") or UNKNOWN)
    if where == _SYMPTOM:
        return PRESENT if key in (symptoms if symptoms is not None else _symptoms(row)) else ABSENT
    raw = (findings if findings is not None else _findings(row)).get(key)
    return _number(raw) if feature.kind == NUMERIC else _category(raw)


def features_of(definition: Definition | None, finding_keys: Iterable[str] = ()) -> list[Feature]:
    """The monitored inputs of a dictionary version: the demographics and findings its models use
    and every symptom it defines. Without one (a cohort with no dictionary), age, sex and the
    numeric findings ``finding_keys`` (those of the train split)."""
    if definition is None:
        names = [Feature("age", NUMERIC), Feature("sex", CATEGORY)]
        return names + [Feature(f"findings.{key}", NUMERIC) for key in sorted(set(finding_keys))]
    result = []
    if definition.uses_age:
        result.append(Feature("age", NUMERIC))
    if definition.uses_sex:
        result.append(Feature("sex", CATEGORY))
    for finding in definition.findings:
        if not finding.used_by_model:
            continue
        numeric = finding.value_type in ("number", "integer")
        expected = (finding.expected_range.min, finding.expected_range.max) if numeric else (None, None)
        result.append(Feature(f"findings.{finding.key}", NUMERIC if numeric else CATEGORY, expected=expected))
    result += [Feature(f"symptoms.{symptom.key}", CATEGORY) for symptom in definition.symptoms]
    return result


def bin_index(feature: Feature, value: Any) -> int:
    """The reference bin of a present value (``OTHER`` is the last category bin)."""
    if feature.kind == NUMERIC:
        # np.searchsorted(edges, value, side="left") without making an array of the edges per call
        # (this runs for every input of every predict request).
        return bisect.bisect_left(feature.edges, value)
    try:
        return feature.categories.index(value)
    except ValueError:
        return len(feature.categories)


def bin_count(feature: Feature) -> int:
    """Bins of present values: ``len(edges) + 1`` numbers, or the categories and ``OTHER``."""
    return len(feature.edges) + 1 if feature.kind == NUMERIC else len(feature.categories) + 1


def bin_labels(feature: Feature) -> list[str]:
    """A readable name per bin, for the API and the admin."""
    if feature.kind != NUMERIC:
        return [*feature.categories, OTHER]
    edges = [f"{edge:.4g}" for edge in feature.edges]
    if not edges:
        return ["all values"]
    return [f"<= {edges[0]}", *(f"{low} .. {high}" for low, high in itertools.pairwise(edges)), f"> {edges[-1]}"]


def _out_of_range(feature: Feature, value: Any) -> bool:
    low, high = feature.expected
    return feature.kind == NUMERIC and ((low is not None and value < low) or (high is not None and value > high))


# --- The reference -------------------------------------------------------------------------------


def reference_of(rows: Sequence[Mapping[str, Any]], features: Sequence[Feature]) -> dict[str, Any]:
    """The reference profile (module docstring) of the train split ``rows`` over ``features``."""
    described: dict[str, Any] = {}
    symptom_sets = [_symptoms(row) for row in rows]
    for feature in features:
        values = [value_of(feature, row, symptoms) for row, symptoms in zip(rows, symptom_sets, strict=True)]
        present = [value for value in values if value is not None]
        missing = len(values) - len(present)
        if feature.kind == NUMERIC:
            edges: list[float] = []
            if present:
                cuts = np.quantile(np.asarray(present, dtype=np.float64), np.arange(1, QUANTILE_BINS) / QUANTILE_BINS)
                edges = sorted({float(cut) for cut in cuts})
            binned = Feature(feature.name, NUMERIC, edges=tuple(edges))
            counts = np.bincount([bin_index(binned, value) for value in present], minlength=bin_count(binned)).tolist()
            described[feature.name] = {
                "kind": NUMERIC,
                "edges": edges,
                "counts": counts,
                "missing": missing,
                "expected_range": list(feature.expected),
            }
        else:
            categories = sorted({str(value) for value in present})
            if feature.name.startswith("symptoms."):
                categories = [ABSENT, PRESENT]
            described[feature.name] = {
                "kind": CATEGORY,
                "categories": categories,
                "counts": [sum(1 for value in present if value == category) for category in categories] + [0],
                "missing": missing,
            }
    return {"format": REFERENCE_FORMAT, "train_size": len(rows), "features": described}


def features_of_reference(reference: Mapping[str, Any]) -> list[Feature]:
    """The binned features a stored reference describes (for tallying live inputs)."""
    result = []
    for name, described in (reference.get("features") or {}).items():
        if described.get("kind") == NUMERIC:
            low, high = ([*list(described.get("expected_range") or [None, None]), None, None])[:2]
            result.append(Feature(name, NUMERIC, edges=tuple(described.get("edges") or ()), expected=(low, high)))
        else:
            result.append(Feature(name, CATEGORY, categories=tuple(described.get("categories") or ())))
    return result


def reference_distribution(described: Mapping[str, Any]) -> list[int]:
    """A reference feature's counts per bin, then its missing count (what PSI compares)."""
    return [*(int(count) for count in described.get("counts") or ()), int(described.get("missing") or 0)]


# --- Live tallies --------------------------------------------------------------------------------


@dataclass
class Tally:
    """Counts of live inputs over ``features``: per feature, per bin (missing last), and out of range.

    ``binned``: whether the features carry a reference's bins; without one only the missing and
    out-of-range counts mean anything (every present value falls in one bin).
    """

    features: Sequence[Feature]
    binned: bool = True
    count: int = 0
    bins: dict[str, list[int]] = field(default_factory=dict)
    out_of_range: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for feature in self.features:
            self.bins.setdefault(feature.name, [0] * (bin_count(feature) + 1))
            self.out_of_range.setdefault(feature.name, 0)

    def add(self, row: Mapping[str, Any]) -> None:
        self.count += 1
        symptoms, findings = _symptoms(row), _findings(row)
        bins, out_of_range = self.bins, self.out_of_range
        for feature in self.features:
            value = value_of(feature, row, symptoms, findings)
            counts = bins[feature.name]
            if value is None:
                counts[-1] += 1
                continue
            counts[bin_index(feature, value)] += 1
            if feature.kind == NUMERIC and feature.expected != (None, None) and _out_of_range(feature, value):
                out_of_range[feature.name] += 1

    def as_json(self) -> dict[str, Any]:
        return {"count": self.count, "binned": self.binned, "bins": self.bins, "out_of_range": self.out_of_range}


def merge_tallies(stored: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The sum of stored tallies (``Tally.as_json``) of one version. Tallies whose bins disagree in
    length with the first (cannot happen for one version: its reference never changes) are skipped."""
    total: dict[str, Any] = {"count": 0, "bins": {}, "out_of_range": {}}
    for tally in stored:
        bins: Mapping[str, list[int]] = tally.get("bins") or {}
        if any(name in total["bins"] and len(total["bins"][name]) != len(counts) for name, counts in bins.items()):
            continue
        total["count"] += int(tally.get("count") or 0)
        for name, counts in bins.items():
            known = total["bins"].setdefault(name, [0] * len(counts))
            for index, count in enumerate(counts):
                known[index] += int(count)
        for name, count in (tally.get("out_of_range") or {}).items():
            total["out_of_range"][name] = total["out_of_range"].get(name, 0) + int(count)
    return total
