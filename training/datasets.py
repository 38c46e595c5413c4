"""Building dataset snapshots: approved, de-identified cases -> a frozen, patient-disjoint Parquet file.

``create_snapshot`` records what is asked for (a row in status building); ``build_snapshot`` does
the work and ends in ``ready`` or ``failed``. The build, in order:

1. Select: approved cases of the model type's cohort with at least the minimum quality (and the
   encounter date range, if any). A first pass reads only ids, pseudonyms and labels, into numpy
   arrays; it never loads records.
2. Validate: enough cases, at least two labels, no label with a single case, one de-identification
   policy for all. A refusal fails the snapshot with a clear message and raises
   ``DatasetBuildError`` (a ``DomainError``, so the API answers it with its code).
3. Split by patient, stratified by label (``training.splitting``).
4. Write: a second pass streams the de-identified records in id order, ``CHUNK_SIZE`` at a time,
   into Parquet row groups in a temporary file, hashing each record's canonical JSON on the way.
5. Scan: every string of the written file, read back from it, goes through the residual-identifier
   scan (``cases.scanning``). Any finding fails the snapshot; the file never reaches storage.
6. Store the file through Django's default storage as ``datasets/<id>-<hash12>.parquet`` and mark
   the snapshot ready with its manifest, label counts, hashes and sizes, all in one UPDATE.

The content hash is a sha256 over the seed, the fractions, the policy version and the label field,
then, in case id order, each case's id, split and the sha256 of its canonical de-identified JSON
(``canonical_json``): the same cases and seed give the same hash, whatever order the database
returns them in and whatever the Parquet library's bytes. ``file_sha256`` pins the file itself.

Memory: the first pass keeps three numpy arrays (8 + 8 + 4 bytes a case) and the manifest holds the
ids once more; records only ever exist one chunk at a time. Any exception fails the snapshot with
the reason, removes the temporary file and leaves nothing in storage.

Only de-identified data is read here: ``Case.deidentified`` and the columns used for selection.
The scan, which needs the raw identifiers, lives in ``cases``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import os
import tempfile
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from django.core.files import File
from django.core.files.storage import default_storage
from django.db.models.fields.json import KT

from cases.models import Case
from cases.scanning import ScanReport, scan_cases
from learning_engine.exceptions import DomainError, InvalidRequest, TransitionError
from training.dataset_format import SCHEMA, row_from_deidentified
from training.models import DatasetSnapshot, ModelType
from training.splitting import SPLIT_NAMES, check_fractions, split_cases

logger = logging.getLogger(__name__)

CHUNK_SIZE = 2000
HASH_FORMAT = "dataset-content-v1"
STORAGE_FOLDER = "datasets"

Progress = Callable[[str, int, int], None]
"""``progress(stage, done, total)``: called as the build goes, for commands and job stages."""


class DatasetBuildError(DomainError):
    """A snapshot that cannot be built from the data as it is (the snapshot is marked failed)."""

    code = "dataset_build_failed"

    def __init__(self, message: str, *, code: str | None = None, scan_report: dict[str, Any] | None = None) -> None:
        super().__init__(message, code=code)
        self.scan_report = scan_report


# --- Creating ------------------------------------------------------------------------------------


def create_snapshot(
    model_type: ModelType,
    *,
    by: Any,
    min_quality: float | None = None,
    encounter_after: dt.date | None = None,
    encounter_before: dt.date | None = None,
    validation_fraction: float = 0.15,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> DatasetSnapshot:
    """A snapshot in status building, with the filters it will use. ``build_snapshot`` builds it.

    Bad parameters raise ``InvalidRequest`` (HTTP 400) and create nothing.
    """
    try:
        check_fractions(validation_fraction, test_fraction)
    except ValueError as error:
        raise InvalidRequest(str(error), code="invalid_fractions") from None
    quality = model_type.min_quality if min_quality is None else min_quality
    if not 0.0 <= quality <= 1.0:
        raise InvalidRequest(f"The minimum quality must be between 0 and 1, got {quality:g}.", code="invalid_quality")
    if encounter_after and encounter_before and encounter_after > encounter_before:
        raise InvalidRequest("The encounter date range ends before it starts.", code="invalid_date_range")
    filters = {
        "cohort": model_type.cohort,
        "label_field": model_type.label_field,
        "min_quality": quality,
        "encounter_after": encounter_after.isoformat() if encounter_after else None,
        "encounter_before": encounter_before.isoformat() if encounter_before else None,
    }
    return DatasetSnapshot.objects.create(
        model_type=model_type,
        filters=filters,
        seed=seed,
        validation_fraction=validation_fraction,
        test_fraction=test_fraction,
        created_by=by,
    )


def selected_cases(filters: dict[str, Any]) -> Any:
    """The cases a snapshot with these filters takes: approved, in the cohort, good enough, labelled.

    Annotated with ``dataset_label``, the label the dataset uses.
    """
    path = _label_path(filters)
    return (
        _base_selection(filters)
        .filter(**{f"{path}__isnull": False})
        .exclude(**{path: ""})
        .exclude(**{path: None})  # a JSON null: the key is there, the label is not
    )


def _label_path(filters: dict[str, Any]) -> str:
    return "deidentified__" + "__".join(filters["label_field"].split("."))


def _base_selection(filters: dict[str, Any]) -> Any:
    """``selected_cases`` without the label tests, which the build applies in Python (cheaper)."""
    queryset = Case.objects.filter(
        status=Case.Status.APPROVED, cohort=filters["cohort"], quality_score__gte=filters["min_quality"]
    )
    if filters.get("encounter_after"):
        queryset = queryset.filter(encounter_date__gte=filters["encounter_after"])
    if filters.get("encounter_before"):
        queryset = queryset.filter(encounter_date__lte=filters["encounter_before"])
    return queryset.annotate(dataset_label=KT(_label_path(filters)))


# --- Building ------------------------------------------------------------------------------------


@dataclass
class _Selection:
    ids: np.ndarray  # int64, ascending
    groups: np.ndarray  # uint64 keys of the patient pseudonyms
    labels: np.ndarray  # int32 codes into label_names
    label_names: list[str]
    policy_version: str


def build_snapshot(snapshot_id: int, *, progress: Progress | None = None) -> DatasetSnapshot:
    """Build a snapshot that is still building: ``building -> ready``, or ``-> failed`` and raise.

    Raises ``DatasetBuildError`` (with a ``code``) when the data does not allow a snapshot or the
    build fails; the snapshot is then failed with the same message.
    """
    snapshot = DatasetSnapshot.objects.select_related("model_type").get(pk=snapshot_id)
    if snapshot.status != DatasetSnapshot.Status.BUILDING:
        raise TransitionError(
            f"Dataset {snapshot.pk} is {snapshot.status}; only a building snapshot can be built.",
            current_status=snapshot.status,
        )
    report = progress or _no_progress
    temporary: str | None = None
    stored: str | None = None
    try:
        selection = _select(snapshot, report)
        _validate(snapshot, selection)
        report("Splitting", 0, len(selection.ids))
        splits = split_cases(
            selection.ids,
            selection.groups,
            selection.labels,
            validation_fraction=snapshot.validation_fraction,
            test_fraction=snapshot.test_fraction,
            seed=snapshot.seed,
        )
        _check_splits(snapshot, splits)
        handle, temporary = tempfile.mkstemp(prefix=f"dataset-{snapshot.pk}-", suffix=".parquet")
        os.close(handle)
        content_hash = _write(snapshot, selection, splits, temporary, report)
        scan = _scan(temporary, len(selection.ids), report)
        if not scan.clean:
            raise DatasetBuildError(
                f"The residual-identifier scan found {scan.total} identifier(s) in {_cases_in(scan)} case(s); "
                "the dataset was not kept. The scan report lists each case, field and kind.",
                code="residual_identifiers",
                scan_report=scan.to_json(),
            )
        report("Saving", 0, 1)
        file_sha256, file_size = _file_digest(temporary)
        with open(temporary, "rb") as source:
            stored = default_storage.save(f"{STORAGE_FOLDER}/{snapshot.pk}-{content_hash[:12]}.parquet", File(source))
        snapshot.mark_ready(
            file=stored,
            manifest={name: selection.ids[splits == code].tolist() for code, name in enumerate(SPLIT_NAMES)},
            label_counts=_label_counts(selection, splits),
            case_count=len(selection.ids),
            patient_count=len(np.unique(selection.groups)),
            policy_version=selection.policy_version,
            content_hash=content_hash,
            file_sha256=file_sha256,
            file_size=file_size,
            scan_report=scan.to_json(),
        )
        report("Saving", 1, 1)
        return snapshot
    except Exception as error:
        if stored:
            default_storage.delete(stored)
        _fail(snapshot, error)
        if isinstance(error, DomainError):
            raise
        raise DatasetBuildError(
            f"Building dataset {snapshot.pk} failed ({type(error).__name__}); the details are in the server log.",
            code="build_error",
        ) from error
    finally:
        if temporary:
            _remove(temporary)


def _no_progress(stage: str, done: int, total: int) -> None:
    return None


def _fail(snapshot: DatasetSnapshot, error: Exception) -> None:
    if isinstance(error, DatasetBuildError):
        message, scan_report = error.message, error.scan_report
    elif isinstance(error, DomainError):
        message, scan_report = error.message, None
    else:
        # The message of an unexpected error may quote data; the snapshot (shown to ML staff)
        # gets its type, the log gets the rest.
        logger.exception("Building dataset %s failed", snapshot.pk)
        message, scan_report = f"Unexpected {type(error).__name__} during the build; see the server log.", None
    snapshot.refresh_from_db(fields=["status"])
    if snapshot.status == DatasetSnapshot.Status.BUILDING:
        snapshot.mark_failed(error=message, scan_report=scan_report)


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)


# --- 1. Select and validate ----------------------------------------------------------------------


def _group_key(pseudonym: str) -> int:
    """A 64-bit key for a pseudonym: its first 16 hex digits (it is an HMAC, so uniformly random).

    Two patients sharing a key (about one chance in 10^9 at 200,000 patients) would only be kept
    in the same split, which never breaks patient-disjointness.
    """
    try:
        return int(pseudonym[:16], 16)
    except ValueError:
        return int.from_bytes(hashlib.blake2b(pseudonym.encode(), digest_size=8).digest(), "little")


def _select(snapshot: DatasetSnapshot, report: Progress) -> _Selection:
    # One pass, no count first: each extra query would evaluate the JSON label of every case again.
    # Compact growable arrays (8 + 8 + 4 bytes a case) until numpy takes them over.
    ids, groups, labels = array("q"), array("Q"), array("i")
    label_codes: dict[str, int] = {}
    policies: set[str] = set()
    rows = (
        _base_selection(snapshot.filters)
        .order_by("id")
        .values_list("id", "patient_pseudonym", "dataset_label", "deid_policy_version")
    )
    report("Selecting cases", 0, 0)
    for case_id, pseudonym, label, policy in rows.iterator(chunk_size=CHUNK_SIZE * 5):
        if label is None or label == "":  # unlabelled cases cannot train a classifier
            continue
        ids.append(case_id)
        groups.append(_group_key(pseudonym))
        labels.append(label_codes.setdefault(str(label), len(label_codes)))
        policies.add(policy)
        if len(ids) % (CHUNK_SIZE * 5) == 0:
            report("Selecting cases", len(ids), 0)
    report("Selecting cases", len(ids), len(ids))
    if len(policies) > 1:
        raise DatasetBuildError(
            f"The selected cases were de-identified under different policies ({', '.join(sorted(policies))}); "
            "a dataset needs one. Narrow the filters (dates) or re-approve the older cases.",
            code="mixed_policy_versions",
        )
    return _Selection(
        ids=np.frombuffer(ids, dtype=np.int64).copy() if ids else np.zeros(0, dtype=np.int64),
        groups=np.frombuffer(groups, dtype=np.uint64).copy() if groups else np.zeros(0, dtype=np.uint64),
        labels=np.frombuffer(labels, dtype=np.int32).copy() if labels else np.zeros(0, dtype=np.int32),
        label_names=list(label_codes),
        policy_version=policies.pop() if policies else "",
    )


def _validate(snapshot: DatasetSnapshot, selection: _Selection) -> None:
    model_type = snapshot.model_type
    count = len(selection.ids)
    where = f"cohort {model_type.cohort!r} (approved, quality >= {snapshot.filters['min_quality']:g}"
    where += _date_range_text(snapshot.filters) + ")"
    if count == 0:
        raise DatasetBuildError(f"No cases to build from: {where} is empty.", code="empty_cohort")
    if count < model_type.min_cases_to_train:
        raise DatasetBuildError(
            f"Too few cases: {where} has {count}; model type {model_type.slug!r} needs at least "
            f"{model_type.min_cases_to_train}.",
            code="too_few_cases",
        )
    counts = np.bincount(selection.labels, minlength=len(selection.label_names))
    if len(selection.label_names) < 2:
        raise DatasetBuildError(
            f"Only one label ({selection.label_names[0]!r}) in {where}; a classifier needs at least two.",
            code="too_few_labels",
        )
    single = sorted(name for name, n in zip(selection.label_names, counts.tolist(), strict=True) if n == 1)
    if single:
        raise DatasetBuildError(
            f"{len(single)} label(s) have a single case ({', '.join(single[:10])}"
            f"{', ...' if len(single) > 10 else ''}): a label needs cases on both sides of the split. "
            "Add cases, or leave those out of the cohort.",
            code="single_case_label",
        )


def _date_range_text(filters: dict[str, Any]) -> str:
    after, before = filters.get("encounter_after"), filters.get("encounter_before")
    if after and before:
        return f", encounters {after} to {before}"
    if after:
        return f", encounters from {after}"
    if before:
        return f", encounters until {before}"
    return ""


def _check_splits(snapshot: DatasetSnapshot, splits: np.ndarray) -> None:
    wanted = {"train": True, "validation": snapshot.validation_fraction > 0, "test": True}
    empty = [name for code, name in enumerate(SPLIT_NAMES) if wanted[name] and not np.any(splits == code)]
    if empty:
        raise DatasetBuildError(
            f"Too few patients to fill every split ({', '.join(empty)} would be empty): all cases of a "
            "patient stay in one split. Add patients or lower the fractions.",
            code="too_few_patients",
        )


def _label_counts(selection: _Selection, splits: np.ndarray) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = {}
    for code, name in enumerate(SPLIT_NAMES):
        per_label = np.bincount(selection.labels[splits == code], minlength=len(selection.label_names))
        counts[name] = {
            label: n for label, n in sorted(zip(selection.label_names, per_label.tolist(), strict=True)) if n
        }
    return counts


# --- 2. Write ------------------------------------------------------------------------------------


def _label_of(record: dict[str, Any], path: list[str]) -> Any:
    value: Any = record
    for part in path:
        value = value.get(part) if isinstance(value, dict) else None
    return value


_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical_json(record: Any) -> bytes:
    """The canonical form of a de-identified record: sorted keys, no spaces, UTF-8."""
    return _CANONICAL.encode(record).encode()


def _write(snapshot: DatasetSnapshot, selection: _Selection, splits: np.ndarray, path: str, report: Progress) -> str:
    """Stream the records into ``path``; return the content hash."""
    label_path = snapshot.filters["label_field"].split(".")
    digest = hashlib.sha256(
        canonical_json(
            {
                "format": HASH_FORMAT,
                "seed": snapshot.seed,
                "validation_fraction": snapshot.validation_fraction,
                "test_fraction": snapshot.test_fraction,
                "policy_version": selection.policy_version,
                "label_field": snapshot.filters["label_field"],
            }
        )
    )
    total = len(selection.ids)
    written = 0
    with pq.ParquetWriter(path, SCHEMA) as writer:
        for start in range(0, total, CHUNK_SIZE):
            ids = selection.ids[start : start + CHUNK_SIZE]
            expected = dict(
                zip(
                    ids.tolist(),
                    zip(
                        splits[start : start + CHUNK_SIZE].tolist(),
                        selection.groups[start : start + CHUNK_SIZE].tolist(),
                        selection.labels[start : start + CHUNK_SIZE].tolist(),
                        strict=True,
                    ),
                    strict=True,
                )
            )
            records = dict(Case.objects.filter(pk__in=list(expected)).order_by().values_list("id", "deidentified"))
            rows: list[dict[str, Any]] = []
            for case_id, (split_code, group, label_code) in expected.items():
                record = records.get(case_id)
                label = selection.label_names[label_code]
                if (
                    not isinstance(record, dict)
                    or str(_label_of(record, label_path)) != label
                    or _group_key(str(record.get("patient_pseudonym", ""))) != group
                    or record.get("policy_version") != selection.policy_version
                ):
                    raise DatasetBuildError(
                        f"Case {case_id} changed or disappeared during the build; build the dataset again.",
                        code="cases_changed",
                    )
                split = SPLIT_NAMES[split_code]
                row = row_from_deidentified(case_id, split, record)
                row["label"] = label
                rows.append(row)
                digest.update(f"\n{case_id}\t{split}\t".encode())
                digest.update(hashlib.sha256(canonical_json(record)).hexdigest().encode())
            writer.write_table(pa.Table.from_pylist(rows, schema=SCHEMA))
            written += len(ids)
            report("Writing", written, total)
    return digest.hexdigest()


def _file_digest(path: str) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as source:
        while block := source.read(1 << 20):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


# --- 3. Scan -------------------------------------------------------------------------------------


def file_cases(path: str) -> Iterator[tuple[int, list[tuple[str, str]]]]:
    """Every string value in a dataset file, per case: ``(case_id, [(field, text), ...])``.

    Read back batch by batch. Every column of a string type is included, found from the file's own
    schema, so a column added to the format later is scanned without anyone remembering to:
    plain and dictionary strings, list items as ``field[i]``, map keys as ``field[i].key`` (the key
    itself may be the leak, so the name says where, not what) and string map values as
    ``field[i].value``.
    """
    parquet = pq.ParquetFile(path)
    fields = [f for f in parquet.schema_arrow if _has_strings(f.type)]
    # Names of list items and map keys, made once: "symptoms[0]", "findings[0].key", ...
    item_names: dict[str, list[str]] = {f.name: [] for f in fields}

    def names(name: str, count: int, suffix: str) -> list[str]:
        known = item_names[name]
        while len(known) < count:
            known.append(f"{name}[{len(known)}]{suffix}")
        return known

    for batch in parquet.iter_batches(batch_size=CHUNK_SIZE, columns=["case_id", *(f.name for f in fields)]):
        columns = [(f.name, f.type, _shape(f.type), batch.column(f.name).to_pylist()) for f in fields]
        for row, case_id in enumerate(batch.column("case_id").to_pylist()):
            texts: list[tuple[str, str]] = []
            for name, data_type, shape, values in columns:
                value = values[row]
                if value is None:
                    continue
                if shape == "string":
                    texts.append((name, value))
                elif shape == "string_list":
                    texts.extend(zip(names(name, len(value), ""), value, strict=False))
                elif shape == "string_keys":
                    texts.extend(zip(names(name, len(value), ".key"), (key for key, _ in value), strict=False))
                else:
                    texts.extend(_strings_in(name, value, data_type))
            yield case_id, texts


def _shape(data_type: pa.DataType) -> str:
    """How to read a column's values fast: the common shapes, else the general walk."""
    if pa.types.is_string(data_type) or pa.types.is_large_string(data_type):
        return "string"
    if pa.types.is_dictionary(data_type) and pa.types.is_string(data_type.value_type):
        return "string"
    if (pa.types.is_list(data_type) or pa.types.is_large_list(data_type)) and pa.types.is_string(data_type.value_type):
        return "string_list"
    if pa.types.is_map(data_type) and pa.types.is_string(data_type.key_type) and not _has_strings(data_type.item_type):
        return "string_keys"
    return "general"


def _has_strings(data_type: pa.DataType) -> bool:
    if pa.types.is_string(data_type) or pa.types.is_large_string(data_type):
        return True
    if pa.types.is_dictionary(data_type):
        return _has_strings(data_type.value_type)
    if pa.types.is_map(data_type):
        return _has_strings(data_type.key_type) or _has_strings(data_type.item_type)
    if pa.types.is_list(data_type) or pa.types.is_large_list(data_type):
        return _has_strings(data_type.value_type)
    if pa.types.is_struct(data_type):
        return any(_has_strings(data_type.field(i).type) for i in range(data_type.num_fields))
    return False


def _strings_in(name: str, value: Any, data_type: pa.DataType) -> Iterator[tuple[str, str]]:
    if value is None:
        return
    if isinstance(value, str):
        yield name, value
    elif pa.types.is_map(data_type):
        key_strings, item_strings = _has_strings(data_type.key_type), _has_strings(data_type.item_type)
        for index, (key, item) in enumerate(value):
            if key_strings:
                yield from _strings_in(f"{name}[{index}].key", key, data_type.key_type)
            if item_strings:
                yield from _strings_in(f"{name}[{index}].value", item, data_type.item_type)
    elif pa.types.is_list(data_type) or pa.types.is_large_list(data_type):
        for index, item in enumerate(value):
            yield from _strings_in(f"{name}[{index}]", item, data_type.value_type)
    elif pa.types.is_struct(data_type):
        for index in range(data_type.num_fields):
            child = data_type.field(index)
            yield from _strings_in(f"{name}.{child.name}", value.get(child.name), child.type)


def _scan(path: str, total: int, report: Progress) -> ScanReport:
    report("Scanning for residual identifiers", 0, total)
    result = scan_cases(file_cases(path))
    report("Scanning for residual identifiers", result.cases, total)
    return result


def _cases_in(scan: ScanReport) -> int:
    return len({finding["case_id"] for finding in scan.findings}) if scan.findings else 0
