"""Features of a case for the trainer, for sklearn's ``DictVectorizer``.

Input is a row (``cases.rows``: de-identified fields only), so the same function featurises
training data and, through ``cases.rows.model_row``, a record sent for prediction. Feature names:

- ``age`` and ``finding:<key>``: numeric. The names come from the training split
  (``numeric_feature_names``) and every row carries all of them: an absent value is written as
  NaN, never 0, so the pipeline's ``SimpleImputer(strategy="median")`` fills it with the training
  median. (A 0 would silently claim "temperature 0 degrees".)
- ``symptom:<name>``: multi-hot, 1.0 when present; absent means "not reported", which is 0.
- ``sex=<value>`` and ``age_band=<band>``: one-hot; a missing band is its own category.

Numeric findings unknown to the training split are dropped here (the model has no column for
them); unknown symptoms or categories are dropped by the vectorizer at transform time.

Which inputs a model is trained on follows from its cohort's data dictionary
(``cases.rows.ModelInputs``): a demographic it marks unused (breast-mass: age and sex) gets no
feature (``age``, ``age_band=...``; ``sex=...``), nor does a finding it marks ``used_by_model:
false``. A trained model's layout is its own: ``numeric_features`` and the fitted vectorizer's
vocabulary, saved in its artifact. ``features`` still writes every demographic of a row, and the
vectorizer keeps only the names it was fitted with, so a version trained with age goes on using
it, and one trained without it ignores an age sent to it.

Two paths, one result. ``features`` makes one row's dict: what a prediction request pays for,
and the definition. A whole split goes through ``RowColumns`` instead (columns coded once,
straight from the Arrow file or from row dicts), and ``feature_matrix`` writes the matrix the
fitted ``DictVectorizer`` would make from the rows' ``features`` dicts, without a dict per row:
the same names in the same columns, the same values bit for bit (tests pin the equivalence).
``fit_vectorizer`` fits the vectorizer's vocabulary from the columns' distinct values, so the
pipeline still takes feature dicts when serving.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from cases.rows import ALL_INPUTS, UNKNOWN, ModelInputs, age_value

if TYPE_CHECKING:  # sklearn stays out of the web process's imports (views -> datasets -> here)
    from sklearn.feature_extraction import DictVectorizer

    from training.models import DatasetSnapshot

AGE = "age"
FINDING_PREFIX = "finding:"
SYMPTOM_PREFIX = "symptom:"


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
    return age_value(row.get("age"))


def _category(value: Any) -> str:
    """A sex or age band as the features and the evaluation's subgroups see it."""
    return str(value or UNKNOWN)


def _sex_feature(category: str) -> str:
    return f"sex={category.strip().lower()}"


def _age_band_feature(category: str) -> str:
    return f"age_band={category}"


def _symptom_feature(symptom: Any) -> str | None:
    text = str(symptom).strip().lower()
    return SYMPTOM_PREFIX + text if text else None


def numeric_feature_names(rows: Iterable[Mapping[str, Any]], inputs: ModelInputs = ALL_INPUTS) -> list[str]:
    """The numeric features of a training split: ``age`` and every finding seen, sorted; of those,
    the ones ``inputs`` uses (a cohort's dictionary may leave age and some findings out)."""
    keys: set[str] = set()
    for row in rows:
        keys.update(str(key) for key in _findings_of(row))
    return _numeric_names(keys, inputs)


def _numeric_names(finding_keys: Iterable[str], inputs: ModelInputs) -> list[str]:
    age = [AGE] if inputs.uses("age") else []
    return [*age, *(FINDING_PREFIX + key for key in sorted(finding_keys) if inputs.uses_finding(key))]


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
        feature = _symptom_feature(symptom)
        if feature is not None:
            result[feature] = 1.0
    result[_sex_feature(_category(row.get("sex")))] = 1.0
    result[_age_band_feature(_category(row.get("age_band")))] = 1.0
    return result


def feature_dicts(rows: Iterable[Mapping[str, Any]], numeric_features: list[str]) -> list[dict[str, float]]:
    return [features(row, numeric_features) for row in rows]


def labels(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    return [str(row["label"]) for row in rows]


# --- Columns: a whole split at once --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Coded:
    """A categorical column: ``values[codes[i]]`` is item i's value; the values are distinct."""

    codes: np.ndarray
    values: list[Any]

    def used_values(self) -> list[Any]:
        """The values some item has (a file's dictionary may hold more)."""
        used = np.bincount(self.codes, minlength=len(self.values)) > 0 if len(self.codes) else ()
        return [value for value, hit in zip(self.values, used, strict=False) if hit]

    def mapped(self, table: Sequence[Any], dtype: Any = object) -> np.ndarray:
        """Each item's entry in ``table`` (one entry per value)."""
        entries: np.ndarray = np.asarray(table, dtype=dtype).reshape(len(self.values))[self.codes]
        return entries


@dataclass(frozen=True, slots=True)
class Entries:
    """Per-row collections (findings, symptoms) as flat entries; ``rows[k]`` is entry k's row."""

    rows: np.ndarray
    keys: Coded
    values: np.ndarray | None = None  # findings: the number (NaN when unusable), as ``features``


@dataclass(frozen=True, slots=True)
class RowColumns:
    """A split's rows as columns, with the same normalisation ``features`` applies per row.

    ``sex`` and ``age_band`` hold ``str(value or "unknown")``, ``age`` the number (NaN when
    missing), ``findings`` each finding's number under its key (the last one when a key repeats,
    as in a dict), ``symptoms`` each symptom as ``str``.
    """

    size: int
    case_ids: np.ndarray
    labels: Coded  # the raw label; None where a row has none
    age: np.ndarray
    sex: Coded
    age_band: Coded
    findings: Entries
    symptoms: Entries

    def __len__(self) -> int:
        return self.size

    def split(self, codes: np.ndarray, count: int) -> list[RowColumns]:
        """The rows of each code ``0..count-1`` (``codes`` has one per row), as columns, in order."""
        codes = np.asarray(codes, dtype=np.intp)
        members = [np.flatnonzero(codes == code) for code in range(count)]
        rank = np.empty(self.size, dtype=np.intp)  # a row's position within its part
        for indices in members:
            rank[indices] = np.arange(len(indices))

        def entries(of: Entries) -> list[Entries]:
            part = codes[of.rows]
            result = []
            for code in range(count):
                kept = part == code
                values = None if of.values is None else of.values[kept]
                result.append(Entries(rank[of.rows[kept]], Coded(of.keys.codes[kept], of.keys.values), values))
            return result

        findings, symptoms = entries(self.findings), entries(self.symptoms)
        return [
            RowColumns(
                size=len(indices),
                case_ids=self.case_ids[indices],
                labels=Coded(self.labels.codes[indices], self.labels.values),
                age=self.age[indices],
                sex=Coded(self.sex.codes[indices], self.sex.values),
                age_band=Coded(self.age_band.codes[indices], self.age_band.values),
                findings=findings[code],
                symptoms=symptoms[code],
            )
            for code, indices in enumerate(members)
        ]

    def label_strings(self) -> np.ndarray:
        """Every row's label as ``str`` (an object array, as ``labels`` gives for row dicts)."""
        return self.labels.mapped([str(value) for value in self.labels.values])

    def label_index(self, labels: Sequence[str]) -> np.ndarray:
        """Each row's label's position in ``labels``; -1 for a label not in it (or none)."""
        position = {label: i for i, label in enumerate(labels)}
        table = [-1 if value is None else position.get(str(value), -1) for value in self.labels.values]
        return self.labels.mapped(table, dtype=np.int64)

    def numeric_feature_names(self, inputs: ModelInputs = ALL_INPUTS) -> list[str]:
        """As ``numeric_feature_names`` of the rows: ``age`` and every finding seen, sorted, of
        those ``inputs`` uses."""
        return _numeric_names({str(key) for key in self.findings.keys.used_values()}, inputs)


class _Encoder:
    """Codes hashable values in order of first appearance."""

    def __init__(self) -> None:
        self.position: dict[Hashable, int] = {}

    def __call__(self, value: Hashable) -> int:
        code = self.position.get(value)
        if code is None:
            code = self.position[value] = len(self.position)
        return code

    def coded(self, codes: list[int]) -> Coded:
        return Coded(np.array(codes, dtype=np.intp), list(self.position))


def _objects(values: list[Any]) -> np.ndarray:
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array


def columns_from_rows(rows: Iterable[Mapping[str, Any]]) -> RowColumns:
    """Columns of row dicts (``cases.rows.row_from_record`` or ``model_row`` shape)."""
    label, sex, band, finding, symptom = _Encoder(), _Encoder(), _Encoder(), _Encoder(), _Encoder()
    case_ids: list[Any] = []
    label_codes: list[int] = []
    ages: list[float] = []
    sex_codes: list[int] = []
    band_codes: list[int] = []
    finding_rows: list[int] = []
    finding_codes: list[int] = []
    finding_values: list[float] = []
    symptom_rows: list[int] = []
    symptom_codes: list[int] = []
    size = 0
    for i, row in enumerate(rows):
        size = i + 1
        case_ids.append(row.get("case_id"))
        label_codes.append(label(row.get("label")))
        ages.append(_number(_age_of(row)))
        sex_codes.append(sex(_category(row.get("sex"))))
        band_codes.append(band(_category(row.get("age_band"))))
        for key, value in _findings_of(row).items():
            finding_rows.append(i)
            finding_codes.append(finding(key))
            finding_values.append(_number(value))
        for item in row.get("symptoms") or ():
            symptom_rows.append(i)
            symptom_codes.append(symptom(str(item)))
    return RowColumns(
        size=size,
        case_ids=_objects(case_ids),
        labels=label.coded(label_codes),
        age=np.array(ages, dtype=np.float64),
        sex=sex.coded(sex_codes),
        age_band=band.coded(band_codes),
        findings=Entries(
            np.array(finding_rows, dtype=np.intp),
            finding.coded(finding_codes),
            np.array(finding_values, dtype=np.float64),
        ),
        symptoms=Entries(np.array(symptom_rows, dtype=np.intp), symptom.coded(symptom_codes)),
    )


def _coded_arrow(array: pa.Array, normalise: Callable[[Any], Any] = lambda value: value) -> Coded:
    """Code an Arrow string array in C: through its dictionary, made first if it has none.

    ``normalise`` maps each distinct value (null included); values it makes equal share a code.
    """
    if not pa.types.is_dictionary(array.type):
        array = pc.dictionary_encode(array)
    raw = array.dictionary.to_pylist()
    indices = array.indices
    if indices.null_count:
        raw.append(None)  # nulls get the last code
        indices = indices.fill_null(len(raw) - 1)
    position: dict[Any, int] = {}
    remap = np.array([position.setdefault(normalise(value), len(position)) for value in raw], dtype=np.intp)
    return Coded(remap[indices.to_numpy(zero_copy_only=False)], list(position))


def _entry_rows(array: pa.Array) -> tuple[np.ndarray, slice]:
    """The row of each entry of a list or map array, and the entries' slice of its child.

    Offsets index the child as stored (a sliced array's child is not sliced). The entries of a
    null row, should it have any, get row -1.
    """
    offsets = array.offsets.to_numpy(zero_copy_only=False).astype(np.intp)
    rows = np.repeat(np.arange(len(array), dtype=np.intp), np.diff(offsets))
    if array.null_count:
        valid = np.asarray(array.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
        rows = np.where(valid[rows], rows, -1)
    return rows, slice(int(offsets[0]), int(offsets[-1]))


def columns_from_arrow(table: pa.Table) -> RowColumns:
    """Columns of a dataset file's table (``training.dataset_format.SCHEMA``), decoded in C.

    The string columns may be read as dictionaries (cheaper) or plain. Equal to
    ``columns_from_rows`` of the table's rows read as dicts (a test pins it), at a fraction of
    the cost: nothing here makes a Python object per row.
    """

    def column(name: str) -> pa.Array:
        # One array per column (row groups joined; their dictionaries unified, in C).
        return table.column(name).combine_chunks()

    findings = column("findings")
    finding_rows, span = _entry_rows(findings)
    finding_keys = _coded_arrow(findings.keys[span])
    values = pc.cast(findings.items[span], pa.float64()).to_numpy(zero_copy_only=False).copy()  # null: NaN
    values[~np.isfinite(values)] = math.nan  # as _number: inf is unusable too
    symptoms = column("symptoms")
    symptom_rows, span = _entry_rows(symptoms)
    symptom_keys = _coded_arrow(symptoms.values[span], str)  # a null symptom is "None", as str() says
    if findings.null_count:
        kept = finding_rows >= 0
        finding_rows, finding_keys, values = finding_rows[kept], _kept(finding_keys, kept), values[kept]
    if symptoms.null_count:
        kept = symptom_rows >= 0
        symptom_rows, symptom_keys = symptom_rows[kept], _kept(symptom_keys, kept)
    return RowColumns(
        size=table.num_rows,
        case_ids=column("case_id").to_numpy(zero_copy_only=False),
        labels=_coded_arrow(column("label")),
        age=pc.cast(column("age"), pa.float64()).to_numpy(zero_copy_only=False),  # null: NaN
        sex=_coded_arrow(column("sex"), _category),
        age_band=_coded_arrow(column("age_band"), _category),
        findings=Entries(finding_rows, finding_keys, values),
        symptoms=Entries(symptom_rows, symptom_keys),
    )


def _kept(coded: Coded, kept: np.ndarray) -> Coded:
    return Coded(coded.codes[kept], coded.values)


def columns_of(rows: Any) -> RowColumns:
    """``rows`` as columns: already columns, rows that carry theirs (a dataset file's), or dicts."""
    if isinstance(rows, RowColumns):
        return rows
    columns = getattr(rows, "columns", None)
    if isinstance(columns, RowColumns):
        return columns
    return columns_from_rows(rows)


def fit_vectorizer(
    vectorizer: DictVectorizer, columns: RowColumns, numeric_features: list[str], inputs: ModelInputs = ALL_INPUTS
) -> DictVectorizer:
    """Fit ``vectorizer`` to the feature names the rows' ``features`` dicts would have.

    Those are the numeric features and one name per distinct symptom, sex and age band; fitting
    a sorting vectorizer (ours) on one dict of them all gives the vocabulary that fitting on
    every row's dict gives. A column ``inputs`` does not use (sex, the age band) gets no names:
    the fitted vectorizer then drops it from every row, when training and when serving.
    """
    if not vectorizer.sort:
        raise ValueError("fit_vectorizer needs a vectorizer that sorts its feature names.")
    names = dict.fromkeys(numeric_features, 1.0)
    for symptom in columns.symptoms.keys.used_values():
        feature = _symptom_feature(symptom)
        if feature is not None:
            names[feature] = 1.0
    if inputs.uses("sex"):
        names |= dict.fromkeys((_sex_feature(value) for value in columns.sex.used_values()), 1.0)
    if inputs.uses("age_band"):
        names |= dict.fromkeys((_age_band_feature(value) for value in columns.age_band.used_values()), 1.0)
    return vectorizer.fit([names])


def feature_matrix(columns: RowColumns, vectorizer: DictVectorizer, numeric_features: list[str]) -> np.ndarray:
    """``vectorizer.transform(feature_dicts(rows, numeric_features))`` of a dense (``sparse=False``)
    fitted vectorizer, computed from the rows' columns."""
    if vectorizer.sparse:
        raise ValueError("feature_matrix builds dense matrices; the vectorizer is sparse.")
    vocabulary: Mapping[str, int] = vectorizer.vocabulary_
    width = len(vocabulary)
    X = np.zeros((columns.size, width), dtype=vectorizer.dtype)
    if columns.size == 0:
        return X
    flat = X.reshape(-1)  # a view: writes by flat index (row * width + column) land in X
    numeric = set(numeric_features)

    # Numeric features: every row has each one, NaN unless the row gives a usable number.
    if AGE in numeric and AGE in vocabulary:
        X[:, vocabulary[AGE]] = columns.age
    for name in numeric:
        if name.startswith(FINDING_PREFIX) and name in vocabulary:
            X[:, vocabulary[name]] = math.nan
    finding_columns = [
        vocabulary.get(FINDING_PREFIX + key, -1) if isinstance(key, str) and FINDING_PREFIX + key in numeric else -1
        for key in columns.findings.keys.values
    ]
    positions = _positions(columns.findings.rows, columns.findings.keys, finding_columns, width)
    assert columns.findings.values is not None
    values = columns.findings.values
    if len(positions) < len(values):
        values = values[columns.findings.keys.mapped(finding_columns, np.intp) >= 0]
    seen = np.zeros(flat.shape, dtype=bool)
    seen[positions] = True
    if np.count_nonzero(seen) < len(positions):
        # A key repeated within a row (a hand-made file): the last one counts, as in a dict.
        # numpy does not promise which of repeated assignments wins, so keep only the last.
        _, first_of_reversed = np.unique(positions[::-1], return_index=True)
        last = len(positions) - 1 - first_of_reversed
        positions, values = positions[last], values[last]
    flat[positions] = values

    # Multi-hot symptoms and one-hot categories: 1.0 in the column of each name the model knows.
    def hot(coded: Coded, rows: np.ndarray | None, name_of: Callable[[Any], str | None]) -> None:
        names = [name_of(value) for value in coded.values]
        table = [-1 if name is None else vocabulary.get(name, -1) for name in names]
        flat[_positions(rows, coded, table, width)] = 1.0

    hot(columns.symptoms.keys, columns.symptoms.rows, _symptom_feature)
    hot(columns.sex, None, _sex_feature)
    hot(columns.age_band, None, _age_band_feature)
    return X


def _positions(rows: np.ndarray | None, coded: Coded, column_of_value: list[int], width: int) -> np.ndarray:
    """Flat matrix positions (row * width + column) of the items whose value has a column (not -1).

    ``rows`` is each item's row; None means item i is row i.
    """
    columns = coded.mapped(column_of_value, np.intp)
    at = np.arange(len(columns), dtype=np.intp) if rows is None else rows
    if min(column_of_value, default=-1) < 0:
        known = columns >= 0
        columns, at = columns[known], at[known]
    positions: np.ndarray = at * width + columns
    return positions


# Here, not in training.tasks, because the worker (tasks -> trainer -> ranges) and the ranges of an
# upload (ranges) both need it: in tasks it closed an import circle.
def model_inputs(cohort: str, *, snapshot: DatasetSnapshot | None = None) -> ModelInputs:
    """What a model of ``cohort`` is trained on: what the data dictionary version it is trained
    under says (the demographics and findings its models use), or every input without one. That
    version is the snapshot's, else the cohort's current one, as its model version will record
    (``ModelVersion.dictionary_of``)."""
    from cases.dictionary.checking import current_dictionary

    if snapshot is not None and snapshot.dictionary_id is not None:
        dictionary = snapshot.dictionary
    else:
        dictionary = current_dictionary(cohort)
    return ModelInputs.of(dictionary.parsed if dictionary is not None else None)
