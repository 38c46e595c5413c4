"""The residual-identifier scan of a written dataset: the last gate before a file is kept.

A dataset file holds de-identified values only. This scan proves it for every string the file
holds: it loads the raw patient block of each case (so it lives in ``cases``, the one app that may
read PHI) and looks for that patient's own identifiers and for anything shaped like an identifier,
with de-identification's own matchers (``cases.deid``: this module knows nothing about what an
identifier looks like). Its report names the case, the field and the kind of identifier, never the
identifier itself. Any finding fails the dataset: the scan errs towards failing (fail closed).

Speed. A dataset's strings are mostly a small vocabulary (labels, symptom names, finding keys, age
bands), so the scan works on batches of cases (``CaseBatch``: column by column, as a file holds
them) and hands each distinct string once to a ``residual.ResidualIndex``, which matches it against
the identifier patterns and indexes its words and numbers. A case is then matched exactly against
its own patient's raw identifiers (its patient block, loaded for it alone) only when the index
cannot rule that patient out with set lookups of the case's residual keys
(``ResidualIndex.might_hold_keys``: the folded words and numbers of its identifiers, which
approval stores on the case, ``residual.residual_keys``; computed from the patient block for a case
without them), or when one of its strings is not plain ASCII. The keys of a whole batch are
looked up at once (``ResidualIndex.rows_that_might_hold``: one set intersection, then only the
cases holding a key that hit). The report is the exact matcher's either way. Pseudonym shapes are
checked for a whole column at once too, one by one only when some value is not one.

Map keys (``findings[3].key``) are checked as the words they are made of (``scrubbing.key_words``:
"doe_score" is "doe score"), the form in which a findings key is refused at submission: as one
word, "doe_score" would hide the name "Doe" from every matcher.

The pseudonym column is not matched against patterns: it is HMAC output (64 hex characters) that
``deid`` computes from the MRN under a secret key, and digit-run patterns (a ZIP code, a birth year)
would occasionally "find" an identifier in random hex, about once per 100,000 patients: a build
that fails at random is no gate. Instead it must *be* a pseudonym (the exact shape), so a raw MRN or
name written into that column by mistake still fails the scan.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any, overload

import numpy as np
from django.db.models import TextField
from django.db.models.functions import Cast

from cases.deid import residual, scrubbing
from cases.models import Case

CHUNK_SIZE = 2000  # cases whose patient blocks are loaded per query
MAX_REPORTED_FINDINGS = 1000
PSEUDONYM_FIELDS = frozenset({"patient_pseudonym"})
PSEUDONYM_SHAPE = re.compile(r"[0-9a-f]{64}")
KEY_SUFFIX = ".key"  # how a map key's field is named (``findings[3].key``)


@dataclass
class ScanReport:
    """What a scan found: ``findings`` are ``{"case_id", "field", "kind"}``, at most ``limit`` of them."""

    findings: list[dict[str, Any]] = field(default_factory=list)
    total: int = 0
    cases: int = 0
    strings: int = 0
    limit: int = MAX_REPORTED_FINDINGS

    @property
    def clean(self) -> bool:
        return self.total == 0

    def add(self, case_id: int, field_name: str, kind: str) -> None:
        self.total += 1
        if len(self.findings) < self.limit:
            self.findings.append({"case_id": case_id, "field": field_name, "kind": kind})

    def to_json(self) -> dict[str, Any]:
        return {
            "clean": self.clean,
            "cases_scanned": self.cases,
            "strings_scanned": self.strings,
            "findings": self.findings,
            "findings_total": self.total,
            "findings_truncated": self.total > len(self.findings),
        }


@dataclass(frozen=True)
class StringColumn:
    """The strings of one column of a batch, dictionary-coded (as Arrow holds them).

    String ``i`` is ``values[codes[i]]`` (absent for a negative code) and belongs to case
    ``rows[i]``, a position in the batch's ``case_ids``; rows ascend (a case's strings together, in
    order). ``fields`` names each string in the report (``"symptoms[1]"``; ``ItemFields`` makes
    such names only when asked), or is one name for all. The scan touches each distinct value
    once and finds occurrences with numpy: the strings themselves never become Python objects.
    """

    fields: str | Sequence[str]
    rows: np.ndarray
    codes: np.ndarray
    values: Sequence[str]

    @classmethod
    def of(cls, fields: str | Sequence[str], rows: Sequence[int], texts: Sequence[str | None]) -> StringColumn:
        """A column from plain strings (None for an absent one)."""
        index: dict[str, int] = {}
        codes = [-1 if text is None else index.setdefault(text, len(index)) for text in texts]
        return cls(fields, np.asarray(rows, dtype=np.int64), np.asarray(codes, dtype=np.int64), list(index))

    def field_of(self, position: int) -> str:
        return self.fields if isinstance(self.fields, str) else self.fields[position]

    def text_of(self, position: int) -> str | None:
        code = int(self.codes[position])
        return self.values[code] if code >= 0 else None

    def subset(self, keep: np.ndarray) -> StringColumn:
        fields = (
            self.fields if isinstance(self.fields, str) else [self.fields[i] for i in np.flatnonzero(keep).tolist()]
        )
        return StringColumn(fields, self.rows[keep], self.codes[keep], self.values)


class ItemFields(Sequence[str]):
    """The names of list items or map entries, ``f"{name}[{position}]{suffix}"``, made when asked for."""

    def __init__(self, name: str, positions: Sequence[int] | np.ndarray, suffix: str = "") -> None:
        self.name = name
        self.positions = positions
        self.suffix = suffix

    def __len__(self) -> int:
        return len(self.positions)

    @overload
    def __getitem__(self, index: int) -> str: ...

    @overload
    def __getitem__(self, index: slice) -> list[str]: ...

    def __getitem__(self, index: int | slice) -> str | list[str]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return f"{self.name}[{self.positions[index]}]{self.suffix}"

    def may_hold(self, names: Collection[str]) -> bool:
        """Whether any of ``names`` can be one of these (without making them all)."""
        prefix = f"{self.name}["
        return any(name.startswith(prefix) and name.endswith(self.suffix) for name in names)


@dataclass(frozen=True)
class CaseBatch:
    """A batch of cases and their strings, column by column (as a dataset file holds them)."""

    case_ids: Sequence[int]
    columns: Sequence[StringColumn]


def scan_dataset_rows(
    rows: Iterable[tuple[int, str, Any]],
    *,
    pseudonym_fields: Collection[str] = PSEUDONYM_FIELDS,
    limit: int = MAX_REPORTED_FINDINGS,
) -> ScanReport:
    """Scan ``(case_id, field, text)`` rows, grouped by case (as a dataset file holds them).

    A case's rows should be consecutive; a case that comes back later is scanned again (correct,
    only slower).
    """
    cases = (
        (case_id, [(field_name, text) for _, field_name, text in case_rows])
        for case_id, case_rows in itertools.groupby(rows, key=itemgetter(0))
    )
    return scan_cases(cases, pseudonym_fields=pseudonym_fields, limit=limit)


def scan_cases(
    cases: Iterable[tuple[int, Sequence[tuple[str, Any]]]],
    *,
    pseudonym_fields: Collection[str] = PSEUDONYM_FIELDS,
    limit: int = MAX_REPORTED_FINDINGS,
) -> ScanReport:
    """Scan ``(case_id, [(field, text), ...])`` per case. Loads the patient blocks ``CHUNK_SIZE`` at a time.

    A case id with no case behind it is a finding too (kind ``UNKNOWN_CASE``): nothing can vouch
    for its strings.
    """

    def batches() -> Iterable[CaseBatch]:
        iterator = iter(cases)
        while chunk := list(itertools.islice(iterator, CHUNK_SIZE)):
            fields: list[str] = []
            rows: list[int] = []
            texts: list[str | None] = []
            for row, (_case_id, case_texts) in enumerate(chunk):
                for field_name, value in case_texts:
                    fields.append(field_name)
                    rows.append(row)
                    texts.append(None if value is None else value if value.__class__ is str else str(value))
            yield CaseBatch([case_id for case_id, _ in chunk], [StringColumn.of(fields, rows, texts)])

    return scan_batches(batches(), pseudonym_fields=pseudonym_fields, limit=limit)


def scan_batches(
    batches: Iterable[CaseBatch],
    *,
    pseudonym_fields: Collection[str] = PSEUDONYM_FIELDS,
    limit: int = MAX_REPORTED_FINDINGS,
) -> ScanReport:
    """Scan batches of cases column by column; the fast path of a dataset build (see the module docstring).

    Each batch's patient blocks are loaded with one query. Findings come in case order within a
    batch.
    """
    report = ScanReport(limit=limit)
    index = residual.ResidualIndex()
    pseudonyms = frozenset(pseudonym_fields)
    for batch in batches:
        _scan_batch(batch, report, index, pseudonyms)
    return report


def _scan_batch(
    batch: CaseBatch, report: ScanReport, index: residual.ResidualIndex, pseudonyms: frozenset[str]
) -> None:
    case_ids = batch.case_ids
    found: dict[int, dict[tuple[str, str], None]] = {}  # row -> ordered (field, kind)

    def add(row: int, field_name: str, kind: str) -> None:
        found.setdefault(int(row), {})[(field_name, kind)] = None

    # Pseudonyms: the shape, nothing else. Map keys: as the words they are made of. Every other
    # string: each distinct one matched once.
    columns: list[StringColumn] = []
    for column in batch.columns:
        report.strings += int(np.count_nonzero(column.codes >= 0))
        pseudonym_part, rest = _split_pseudonyms(column, pseudonyms)
        if pseudonym_part is not None:
            bad = _not_pseudonyms(pseudonym_part.values)
            for position in _positions(pseudonym_part, bad):
                add(pseudonym_part.rows[position], pseudonym_part.field_of(position), "PSEUDONYM_FORMAT")
        if rest is not None:
            columns += _keys_as_words(rest)
    facts = index.add_all(text for column in columns for text in column.values if text)

    # Pattern-shaped strings, and the cases with a string only the exact matcher can judge.
    exact_rows: set[int] = set()
    for column in columns:
        flagged = [
            code for code, text in enumerate(column.values) if text and (facts[text].kinds or not facts[text].plain)
        ]
        for position in _positions(column, flagged):
            fact = facts[column.values[column.codes[position]]]
            row = int(column.rows[position])
            for kind in fact.kinds:
                add(row, column.field_of(position), kind)
            if not fact.plain:
                exact_rows.add(row)

    # Each patient's own identifiers: exactly, unless the index rules them out by the case's keys
    # (stored at approval; computed here from the patient block for a case without them).
    keys = _residual_keys(case_ids)
    known: list[int] = []
    for row, case_id in enumerate(case_ids):
        if case_id in keys:
            known.append(row)
        else:
            add(row, "case_id", "UNKNOWN_CASE")
    held = index.rows_that_might_hold([keys[case_ids[row]] for row in known])
    exact = sorted(exact_rows.intersection(known).union(known[position] for position in held))
    patients = _patients([case_ids[row] for row in exact])
    for row in exact:
        patient, encounter_date = patients[case_ids[row]]
        texts = _texts_of(columns, row)
        for field_name, kind in residual.exact_findings(texts, patient, _date(encounter_date), facts):
            add(row, field_name, kind)

    report.cases += len(case_ids)
    for row in sorted(found):
        for field_name, kind in found[row]:
            report.add(case_ids[row], field_name, kind)


_HEX_DIGITS = b"0123456789abcdef"


def _not_pseudonyms(values: Sequence[str]) -> list[int]:
    """The codes of the values that are not pseudonym-shaped (``PSEUDONYM_SHAPE``).

    All of them at once when they all are (every one 64 characters long, all of them lower-case
    hex digits together: a few C loops); one by one otherwise.
    """
    if set(map(len, values)) <= {64}:
        joined = "".join(values)
        if joined.isascii() and not joined.encode().translate(None, _HEX_DIGITS):
            return []
    return [code for code, text in enumerate(values) if not PSEUDONYM_SHAPE.fullmatch(text)]


def _positions(column: StringColumn, codes: list[int]) -> list[int]:
    """Where in ``column`` these codes occur."""
    if not codes:
        return []
    return np.flatnonzero(np.isin(column.codes, codes)).tolist()


def _split_pseudonyms(
    column: StringColumn, pseudonyms: frozenset[str]
) -> tuple[StringColumn | None, StringColumn | None]:
    """``(its pseudonym strings, the others)`` of a column, each None when empty."""
    if isinstance(column.fields, str):
        return (column, None) if column.fields in pseudonyms else (None, column)
    if isinstance(column.fields, ItemFields) and not column.fields.may_hold(pseudonyms):
        return None, column
    mask = np.array([name in pseudonyms for name in column.fields], dtype=bool)
    if not mask.any():
        return None, column
    if mask.all():
        return column, None
    return column.subset(mask), column.subset(~mask)


def _is_key(name: str) -> bool:
    return name.endswith(KEY_SUFFIX)


def _keys_as_words(column: StringColumn) -> list[StringColumn]:
    """The column with its map keys (fields named ``...].key``) written as the words they are made
    of (``scrubbing.key_words``), so that a key is checked as a findings key is checked at submission."""
    fields = column.fields
    if isinstance(fields, ItemFields):
        return [_with_key_words(column)] if fields.suffix == KEY_SUFFIX else [column]
    if isinstance(fields, str):
        return [_with_key_words(column)] if _is_key(fields) else [column]
    keys = np.array([_is_key(name) for name in fields], dtype=bool)
    if not keys.any():
        return [column]
    if keys.all():
        return [_with_key_words(column)]
    return [_with_key_words(column.subset(keys)), column.subset(~keys)]


def _with_key_words(column: StringColumn) -> StringColumn:
    return StringColumn(
        column.fields, column.rows, column.codes, [scrubbing.key_words(value) for value in column.values]
    )


def _texts_of(columns: Sequence[StringColumn], row: int) -> list[tuple[str, str]]:
    """One case's non-empty strings, as ``(field, text)``."""
    texts: list[tuple[str, str]] = []
    for column in columns:
        start, stop = np.searchsorted(column.rows, [row, row + 1])
        for position in range(int(start), int(stop)):
            text = column.text_of(position)
            if text:
                texts.append((column.field_of(position), text))
    return texts


def _in_batch(case_ids: Sequence[int]) -> Any:
    """The cases of these ids. Ids close together (a dataset of one cohort, read in id order) are
    read as one range of the primary key, which costs the database less than a long ``IN`` list."""
    wanted = set(case_ids)
    low, high = min(wanted), max(wanted)
    queryset = Case.objects.order_by()
    if high - low < 2 * len(wanted):
        return queryset.filter(pk__gte=low, pk__lte=high)
    return queryset.filter(pk__in=wanted)


def _residual_keys(case_ids: Sequence[int]) -> dict[int, str]:
    """``{case_id: residual keys}`` for the cases that exist (``residual.residual_keys``).

    A case approved before the keys were stored (or written around ``Case.approve``) has none:
    its keys are computed from its patient block here, so such a case is never ruled out unread.
    """
    wanted = set(case_ids)
    if not wanted:
        return {}
    keys = {
        case_id: case_keys
        for case_id, case_keys in _in_batch(case_ids).values_list("id", "residual_keys")
        if case_id in wanted
    }
    missing = [case_id for case_id, case_keys in keys.items() if not case_keys]
    for case_id, (patient, _encounter_date) in _patients(missing).items():
        keys[case_id] = residual.residual_keys(patient)
    return keys


def _patients(case_ids: Sequence[int]) -> dict[int, tuple[Any, Any]]:
    """``{case_id: (patient, encounter_date text)}`` for the cases that exist.

    The patient block comes as JSON text decoded here, which is the cheapest way on both databases:
    SQLite's JSON functions parse the document again for each key, and on PostgreSQL key lookups
    (``KT``) plus the type check they need (a number's text form there need not be Python's,
    which ``deid`` matches) cost as much as the decoding. The encounter date comes as text, made a
    date only for the few cases matched exactly.
    """
    wanted = set(case_ids)
    if not wanted:
        return {}
    rows = _in_batch(case_ids).values_list("id", Cast("patient", TextField()), Cast("encounter_date", TextField()))
    loads = json.loads
    return {
        case_id: (loads(patient) if patient else {}, encounter_date)
        for case_id, patient, encounter_date in rows
        if case_id in wanted
    }


def _date(text: str | None) -> dt.date | None:
    try:
        return dt.date.fromisoformat(text) if text else None
    except ValueError:
        return None
