"""The de-identified row: what of a case a dataset file holds and a model reads. The one owner.

A row is a projection of a de-identified record (``cases.deid.records.deidentify``'s output) and nothing
else: no note, no ZIP, no source identifiers. ``COLUMNS`` is its one definition, in file order;
everything else follows from it:

- ``stored_row``: the row as one line of compact JSON, computed at approval
  (``Case.deid_dataset_row``) so that a dataset build reads it instead of decoding whole records;
  ``stored_row_schema`` is the Arrow schema its JSON reader parses that line with;
- ``dataset_schema``: the Arrow schema of the dataset file (``training.dataset_format``), i.e. the
  columns plus the case id and split the build adds, and the label the snapshot chose;
- ``row_from_record``: the row as a dict (the file's columns), from a de-identified record, for
  tests and the per-row paths; ``model_row``: only the columns a model reads (``MODEL_FIELDS``),
  which is what a prediction keeps in memory and what its input hash covers;
- ``ModelInputs``: which of those a cohort's models use, from its data dictionary
  (``demographics`` and the findings ``used_by_model``). The features
  (``training.features``) leave the others out when a model is trained; a trained model's own
  layout is its fitted vectoriser's vocabulary, so a version trained with age keeps using it;
- ``dictionary_keys``: the findings and symptoms a dictionary version defines, the only entries
  of those columns a dataset file built under it holds.

pyarrow is imported only when a schema is asked for: the web process imports this module (through
``cases.derived``) without paying for it.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cases.deid.safe_harbor import OLDEST_BAND
from cases.dictionary.definition import DEMOGRAPHICS, Definition

if TYPE_CHECKING:
    import pyarrow as pa

# The dataset file's format: its schema's ``format_version`` metadata. Files of every version a
# reader accepts must still read; bump it (and teach the readers both) only for a change they
# cannot read.
FORMAT_VERSION = "1"
# The stored row's format: every stored row begins with it (``STORED_ROW_PREFIX``); a stored row
# that does not is of an older format and is computed again from the record.
STORED_ROW_FORMAT = "dr1"
STORED_ROW_PREFIX = f'{{"v":"{STORED_ROW_FORMAT}",'
# The "90+" band (``OLDEST_BAND``) is this number in a row's ``age``.
OLDEST_AGE = 90
UNKNOWN = "unknown"  # the sex of a record that gives none


@dataclass(frozen=True, slots=True)
class Column:
    """One column of the row.

    ``arrow``: its Arrow type by name (``_arrow_type``). ``stored``: its ``(key, arrow type)``
    pairs in the stored row, empty for the columns the build adds (the case id, the split); a
    mapping is stored as two lists, its keys and its values. ``model``: a model reads it;
    ``demographic``: the dictionary's ``demographics`` switch that says whether models use it;
    ``vocabulary``: the dictionary's list its entries (a mapping's keys) must come from, else they
    are left out of a dataset file (``dictionary_keys``).
    """

    name: str
    arrow: str
    nullable: bool = True
    stored: tuple[tuple[str, str], ...] = ()
    model: bool = False
    demographic: str | None = None
    vocabulary: str | None = None


COLUMNS: tuple[Column, ...] = (
    Column("case_id", "int64", nullable=False),
    Column("split", "split", nullable=False),
    Column("patient_pseudonym", "string", nullable=False, stored=(("pseudonym", "string"),)),
    # The snapshot's label: by default the diagnosis code, stored as "code"; another label field
    # is read from the record by the build.
    Column("label", "string", nullable=False, stored=(("code", "string"),)),
    Column("label_text", "string", stored=(("label", "string"),)),
    Column("age", "int16", stored=(("age", "int16"),), model=True, demographic="age"),  # 90: "90+"
    Column("age_band", "string", stored=(("age_band", "string"),), model=True, demographic="age"),
    Column("sex", "string", stored=(("sex", "string"),), model=True, demographic="sex"),
    Column("encounter_year", "int16", stored=(("year", "int16"),)),
    Column(
        "findings",
        "map<string,float64>",
        stored=(("finding_keys", "list<string>"), ("finding_values", "list<float64>")),
        model=True,
        vocabulary="findings",
    ),
    Column("symptoms", "list<string>", stored=(("symptoms", "list<string>"),), model=True, vocabulary="symptoms"),
)
COLUMN_NAMES = tuple(column.name for column in COLUMNS)
# The row fields the model reads (``training.features.features``): the row a prediction keeps in
# memory, and what its input hash covers.
MODEL_FIELDS = tuple(column.name for column in COLUMNS if column.model)
# The stored row's keys, in order: its format first, then each column's.
STORED_KEYS = ("v", *(key for column in COLUMNS for key, _type in column.stored))


# --- Building rows -------------------------------------------------------------------------------


def age_value(value: Any) -> Any:
    """A de-identified age as a row holds it: "90+" as ``OLDEST_AGE``, anything else as it is."""
    return OLDEST_AGE if value == OLDEST_BAND else value


def stored_row(deidentified: Mapping[str, Any]) -> str:
    """The row of a de-identified record as one line of compact JSON (``STORED_KEYS``).

    The age a number (90 standing for the "90+" band), findings as two lists in key order (the
    same whatever order the database keeps a record's keys in: PostgreSQL's jsonb reorders them).
    """
    findings = deidentified.get("findings") or {}
    diagnosis = deidentified.get("diagnosis") or {}
    keys = sorted(findings)
    row = {  # in ``STORED_KEYS`` order: "v" first, so a row's format shows in its first bytes
        "v": STORED_ROW_FORMAT,
        "pseudonym": deidentified["patient_pseudonym"],
        "code": diagnosis.get("code"),
        "label": diagnosis.get("label") or "",
        "age": age_value(deidentified.get("age")),
        "age_band": deidentified.get("age_band"),
        "sex": deidentified.get("sex") or UNKNOWN,
        "year": deidentified.get("encounter_year"),
        "finding_keys": keys,
        "finding_values": [findings[key] for key in keys],
        "symptoms": list(deidentified.get("symptoms") or []),
    }
    return json.dumps(row, separators=(",", ":"), ensure_ascii=False)


def row_from_record(
    record: Mapping[str, Any], *, case_id: int | None = None, split: str | None = None
) -> dict[str, Any]:
    """A de-identified record as a row dict with every column (``COLUMN_NAMES``).

    A prediction request's record may have no diagnosis (that is what is being predicted) and no
    pseudonym, so the label and the pseudonym may be None here.
    """
    diagnosis = record.get("diagnosis") or {}
    if not isinstance(diagnosis, Mapping):
        diagnosis = {}
    values = {
        "case_id": case_id,
        "split": split,
        "patient_pseudonym": record.get("patient_pseudonym"),
        "label": diagnosis.get("code"),
        "label_text": diagnosis.get("label") or "",
        "encounter_year": record.get("encounter_year"),
        **model_row(record),
    }
    return {name: values[name] for name in COLUMN_NAMES}


def model_row(record: Mapping[str, Any]) -> dict[str, Any]:
    """The columns a model reads (``MODEL_FIELDS``) of a de-identified record, or of a prediction
    request's own ``age``, ``age_band``, ``sex``, ``findings`` and ``symptoms`` (already checked)."""
    return {
        "age": age_value(record.get("age")),
        "age_band": record.get("age_band"),
        "sex": record.get("sex") or UNKNOWN,
        "findings": dict(record.get("findings") or {}),
        "symptoms": list(record.get("symptoms") or []),
    }


# --- Which inputs a cohort's models use ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ModelInputs:
    """The inputs a model is trained on: the demographics it uses and, when a dictionary says so,
    which findings (None: every finding of the training split)."""

    demographics: frozenset[str] = frozenset(DEMOGRAPHICS)
    findings: frozenset[str] | None = None

    @classmethod
    def of(cls, definition: Definition | None) -> ModelInputs:
        """What a dictionary version says; everything without one (a cohort with no dictionary)."""
        if definition is None:
            return cls()
        used = {"age": definition.uses_age, "sex": definition.uses_sex}
        return cls(
            demographics=frozenset(name for name in DEMOGRAPHICS if used[name]),
            findings=frozenset(definition.model_findings),
        )

    def uses(self, column: str) -> bool:
        """Whether a model reads the column ``column`` (a name of ``MODEL_FIELDS``)."""
        demographic = _DEMOGRAPHIC_OF.get(column)
        return column in MODEL_FIELDS and (demographic is None or demographic in self.demographics)

    def uses_finding(self, key: str) -> bool:
        return self.findings is None or key in self.findings


def dictionary_keys(definition: Definition) -> dict[str, frozenset[str]]:
    """The entries each column with a ``vocabulary`` may hold under a dictionary version: its
    findings keys and its symptom keys. Nothing else of a record reaches a dataset file: a key
    outside them (a case checked under an older version, or never checked) is left out."""
    vocabularies = {"findings": definition.finding_keys, "symptoms": definition.symptom_keys}
    return {column.name: vocabularies[column.vocabulary] for column in COLUMNS if column.vocabulary}


_DEMOGRAPHIC_OF = {column.name: column.demographic for column in COLUMNS if column.demographic}
ALL_INPUTS = ModelInputs()


# --- Arrow schemas -------------------------------------------------------------------------------


def _arrow_type(name: str) -> pa.DataType:
    import pyarrow as pa

    types = {
        "int16": pa.int16(),
        "int64": pa.int64(),
        "string": pa.string(),
        "split": pa.dictionary(pa.int8(), pa.string()),
        "list<string>": pa.list_(pa.string()),
        "list<float64>": pa.list_(pa.float64()),
        "map<string,float64>": pa.map_(pa.string(), pa.float64()),
    }
    return types[name]


@functools.cache
def dataset_schema() -> pa.Schema:
    """The dataset file's Arrow schema: ``COLUMNS`` in order, ``FORMAT_VERSION`` in its metadata."""
    import pyarrow as pa

    return pa.schema(
        [pa.field(column.name, _arrow_type(column.arrow), nullable=column.nullable) for column in COLUMNS],
        metadata={"format_version": FORMAT_VERSION},
    )


@functools.cache
def stored_row_schema() -> pa.Schema:
    """The Arrow schema a stored row (``stored_row``) is parsed with: ``STORED_KEYS`` and types."""
    import pyarrow as pa

    fields = [pa.field("v", pa.string())]
    fields += [pa.field(key, _arrow_type(kind)) for column in COLUMNS for key, kind in column.stored]
    return pa.schema(fields)
