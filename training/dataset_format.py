"""The dataset file format (Parquet): one row per case, de-identified fields only.

The builder (``training.datasets``) writes it; the trainer and the registry's evaluation read it.
Deliberately absent: the free-text note (data minimisation: no model here reads text, and text
is where residual identifiers hide), the external id, the source's own identifiers.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from typing import Any, overload

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from cases.rows import MODEL_FIELDS, dataset_schema
from training.features import RowColumns, columns_from_arrow
from training.splitting import SPLIT_NAMES

# The file's columns are ``cases.rows.COLUMNS`` (the one definition of the de-identified row).
SCHEMA = dataset_schema()


def read_bytes(snapshot: Any) -> bytes:
    """A ready snapshot's file, its sha256 checked.

    The file is read through the storage (shared object storage in a multi-machine deployment).
    A snapshot is immutable, so a file that no longer matches its recorded sha256 is an error.
    """
    with snapshot.file.open("rb") as handle:
        data = handle.read()
    digest = hashlib.sha256(data).hexdigest()
    if snapshot.file_sha256 and digest != snapshot.file_sha256:
        raise DatasetFileChanged(f"Dataset {snapshot.pk}'s file does not match its recorded sha256.")
    return data


# What training reads of a file up front: the features, the label and the split, with the strings
# as Parquet stores them (dictionaries), so they are coded without a Python string per row.
TRAINING_COLUMNS = ("case_id", "split", "label", *MODEL_FIELDS)


def _string_paths(schema: pa.Schema, names: Sequence[str]) -> tuple[str, ...]:
    """The Parquet paths of the strings among the columns ``names``: what reads as dictionaries."""
    paths: list[str] = []
    for field in schema:
        kind = field.type
        if field.name not in names:
            continue
        if pa.types.is_string(kind) or pa.types.is_dictionary(kind):
            paths.append(field.name)
        elif pa.types.is_map(kind) and pa.types.is_string(kind.key_type):
            paths.append(f"{field.name}.key_value.key")
        elif pa.types.is_list(kind) and pa.types.is_string(kind.value_type):
            paths.append(f"{field.name}.list.element")
    return tuple(paths)


_DICTIONARY_COLUMNS = _string_paths(SCHEMA, TRAINING_COLUMNS)


class _RowGroups:
    """A Parquet file in memory whose rows become dicts on demand, a few row groups at a time."""

    def __init__(self, data: bytes) -> None:
        self._file = pq.ParquetFile(pa.BufferReader(data))
        sizes = [self._file.metadata.row_group(i).num_rows for i in range(self._file.num_row_groups)]
        self._starts = np.cumsum([0, *sizes])

    def dicts(self, rows: np.ndarray) -> list[dict[str, Any]]:
        """The rows at ``rows`` (file positions), in that order, as dicts."""
        if not len(rows):
            return []
        groups = np.searchsorted(self._starts, rows, side="right") - 1
        needed = np.unique(groups)
        table = self._file.read_row_groups(needed.tolist())
        # Where each needed group starts within the table just read.
        sizes = np.diff(self._starts)[needed]
        read_start = np.zeros(len(self._starts), dtype=np.int64)
        read_start[needed] = np.cumsum(sizes) - sizes
        return _dicts(table.take(rows - self._starts[groups] + read_start[groups]))


class SplitRows(Sequence[dict[str, Any]]):
    """One split of a dataset file: a sequence of plain row dicts, each made when accessed.

    The rows stay in the file until someone asks for a dict: the trainer never does for a whole
    split, it featurises ``columns`` (``training.features.RowColumns``, decoded in C) instead.
    Each dict is what ``pyarrow.Table.to_pylist`` gives, with the findings as a dict.
    """

    def __init__(self, file: _RowGroups, indices: np.ndarray, columns: RowColumns) -> None:
        self._file = file
        self._indices = indices  # this split's rows' positions in the file
        self.columns = columns

    def __len__(self) -> int:
        return len(self._indices)

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...

    @overload
    def __getitem__(self, index: slice) -> list[dict[str, Any]]: ...

    def __getitem__(self, index: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        if isinstance(index, slice):
            return self._file.dicts(self._indices[index])
        return self._file.dicts(self._indices[[index]])[0]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for start in range(0, len(self), _ITER_BATCH):
            yield from self[start : start + _ITER_BATCH]


_ITER_BATCH = 4096


def _dicts(table: pa.Table) -> list[dict[str, Any]]:
    rows = table.to_pylist()
    for row in rows:
        row["findings"] = dict(row["findings"] or [])
    return rows


def read_rows_by_split(snapshot: Any) -> dict[str, SplitRows]:
    """A ready snapshot's rows grouped by split (file order within each), sha256 checked first.

    Every split of ``SPLIT_NAMES`` is present (possibly empty), and any other split the file names.
    The training columns are decoded once for the whole file (``columns_from_arrow``), then split.
    """
    return rows_by_split_of(read_bytes(snapshot))


def rows_by_split_of(data: bytes) -> dict[str, SplitRows]:
    """``read_rows_by_split`` of a dataset file's bytes already read (and checked) by the caller."""
    table = pq.read_table(
        pa.BufferReader(data), columns=list(TRAINING_COLUMNS), read_dictionary=list(_DICTIONARY_COLUMNS)
    )
    split = table.column("split").combine_chunks()  # row groups' dictionaries unified
    if not pa.types.is_dictionary(split.type):
        split = pc.dictionary_encode(split)
    in_file = split.dictionary.to_pylist()
    names = [*SPLIT_NAMES, *(name for name in in_file if name not in SPLIT_NAMES)]
    # Each row's split as its position in ``names``; a name the file lacks gets no rows.
    order = np.array([names.index(name) for name in in_file], dtype=np.intp)
    codes = order[split.indices.to_numpy(zero_copy_only=False)]
    parts = columns_from_arrow(table).split(codes, len(names))
    file = _RowGroups(data)
    return {
        name: SplitRows(file, np.flatnonzero(codes == code), part)
        for code, (name, part) in enumerate(zip(names, parts, strict=True))
    }


class DatasetFileChanged(Exception):
    pass
