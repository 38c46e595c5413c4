"""Building dataset snapshots: approved, de-identified cases -> a frozen, patient-disjoint Parquet file.

``create_snapshot`` records what is asked for (a row in status building); ``build_snapshot`` does
the work and ends in ``ready`` or ``failed``. The build, in order:

1. Read: approved cases of the model type's cohort with at least the minimum quality (and the
   encounter date range, if any), in id order, ``CHUNK_SIZE`` at a time. What the file needs of
   each de-identified record was computed once, when the case was approved
   (``cases.derived.approval_columns``): its dataset row (one line of JSON, the record's fields
   that a file holds) and the record's sha256. The pass reads those two columns, not the records;
   Arrow's JSON reader turns a chunk of rows into columns in C, and they go to a temporary Arrow
   file (no split yet). Only ids, pseudonym keys, label codes and a fingerprint of each record
   stay in memory, as numpy arrays. A case without the stored columns (approved before they
   existed) gets them computed from its record here.
   A case de-identified under an older policy than the current one is de-identified again as its
   chunk is read (``cases.redeid``, which reads its raw record in ``cases``), so a build never
   mixes policies.
2. Validate: enough cases, at least two labels, no label with a single case, one de-identification
   policy for all. A refusal fails the snapshot with a clear message and raises
   ``DatasetBuildError`` (a ``DomainError``, so the API answers it with its code).
3. Split by patient, stratified by label (``training.splitting``).
4. Write: the rows, read back from the temporary file, get their split and go into Parquet row
   groups (Arrow to Parquet, no Python objects per row).
5. Scan: every string of the written file, read back from it column by column, goes through the
   residual-identifier scan (``cases.scanning``). Any finding fails the snapshot; the file never
   reaches storage.
6. Check: the selection is read again (ids and record digests only) and every case must still be
   there with the record it had when it was read; a case changed, retracted or re-labelled during the build
   fails it ("cases_changed"): build again.
7. Store the file through Django's default storage as ``datasets/<id>-<hash12>.parquet`` and mark
   the snapshot ready with its manifest, label counts, hashes and sizes, all in one UPDATE.

The content hash (``HASH_FORMAT`` v3) is a sha256 over the seed, the fractions, the policy version
and the label field, then the case ids in id order, their split codes, and the sha256s of the
cases' de-identified records (canonical JSON, stored at approval) in id order: the same cases and
seed give the same hash, whatever order the database returns them in and whatever the Parquet
library's bytes. ``file_sha256`` pins the file itself.

Memory: the arrays hold 8 + 8 + 4 + 8 bytes a case and the manifest holds the ids once more;
records only ever exist one chunk at a time. Any exception fails the snapshot with the reason,
removes the temporary files and leaves nothing in storage.

Only de-identified data is read here: ``Case.deidentified``, the columns derived from it at
approval (``deid_dataset_row``, ``deid_sha256``) and the columns used for selection.
The scan, which needs the raw identifiers, lives in ``cases``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import hashlib
import io
import itertools
import json
import logging
import os
import tempfile
import time
from array import array
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json
import pyarrow.parquet as pq
from django.core.files import File
from django.core.files.storage import default_storage
from django.db.models import QuerySet, TextField
from django.db.models.fields.json import KT
from django.db.models.functions import Cast

from cases import redeid
from cases.deid.records import record_sha256
from cases.deid.safe_harbor import POLICY_VERSION
from cases.dictionary.checking import current_dictionary
from cases.models import Case, DataDictionary
from cases.rows import (
    COLUMNS,
    STORED_ROW_FORMAT,
    STORED_ROW_PREFIX,
    dictionary_keys,
    stored_row,
    stored_row_schema,
)
from cases.scanning import CaseBatch, ItemFields, ScanReport, StringColumn, scan_batches
from learning_engine.exceptions import DomainError, InvalidRequest, TransitionError
from training.dataset_format import SCHEMA
from training.models import DatasetSnapshot, ModelType, locked_pseudonyms
from training.models.dataset import check_date_range, is_whole_years, visible_to
from training.splitting import SPLIT_NAMES, check_fractions, split_cases

if TYPE_CHECKING:
    from learning_engine.actors import Actor, SystemActor

logger = logging.getLogger(__name__)

CHUNK_SIZE = 2000
HASH_FORMAT = "dataset-content-v3"
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
    by: SystemActor,
    min_quality: float | None = None,
    encounter_after: dt.date | None = None,
    encounter_before: dt.date | None = None,
    validation_fraction: float = 0.15,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> DatasetSnapshot:
    """A snapshot in status building, with the filters it will use. ``build_snapshot`` builds it.

    Bad parameters raise ``InvalidRequest`` (HTTP 400) and create nothing; so does an encounter
    date range finer than whole years unless ``by`` may see PHI (``check_date_range``).
    """
    snapshot = snapshot_request(
        model_type,
        by=by,
        min_quality=min_quality,
        encounter_after=encounter_after,
        encounter_before=encounter_before,
        validation_fraction=validation_fraction,
        test_fraction=test_fraction,
        seed=seed,
    )
    snapshot.save(force_insert=True)
    return snapshot


def snapshot_request(
    model_type: ModelType,
    *,
    by: SystemActor,
    min_quality: float | None = None,
    encounter_after: dt.date | None = None,
    encounter_before: dt.date | None = None,
    validation_fraction: float = 0.15,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> DatasetSnapshot:
    """``create_snapshot`` without saving: the checked, unsaved snapshot (for ``preview_snapshot``)."""
    try:
        check_fractions(validation_fraction, test_fraction)
    except ValueError as error:
        raise InvalidRequest(str(error), code="invalid_fractions") from None
    quality = model_type.min_quality if min_quality is None else min_quality
    if not 0.0 <= quality <= 1.0:
        raise InvalidRequest(f"The minimum quality must be between 0 and 1, got {quality:g}.", code="invalid_quality")
    check_date_range(encounter_after, encounter_before, by=by)
    filters = {
        "cohort": model_type.cohort,
        "label_field": model_type.label_field,
        "min_quality": quality,
        "encounter_after": encounter_after.isoformat() if encounter_after else None,
        "encounter_before": encounter_before.isoformat() if encounter_before else None,
    }
    return DatasetSnapshot(
        model_type=model_type,
        filters=filters,
        seed=seed,
        validation_fraction=validation_fraction,
        test_fraction=test_fraction,
        created_by=by,
    )


@dataclass(frozen=True)
class SnapshotPreview:
    """What building a snapshot would give now: its counts and content hash, no file."""

    case_count: int
    patient_count: int
    label_counts: dict[str, dict[str, int]]
    split_sizes: dict[str, int]
    content_hash: str


def preview_snapshot(snapshot: DatasetSnapshot, *, progress: Progress | None = None) -> SnapshotPreview:
    """Steps 1 to 3 of a build (read, validate, split) and the content hash, for a snapshot that
    need not be saved: nothing is written but a temporary file, nothing is scanned or stored.

    For a dry run, and to find a ready snapshot with the same content before building another
    (``same_content``). Raises ``DatasetBuildError`` where the build would. Like a build, it
    de-identifies again the selected cases of an older policy (``cases.redeid``): that refreshes
    derived data, it makes no dataset.
    """
    temporaries: list[str] = []
    try:
        rows_file = _temporary_file(snapshot, ".arrow", temporaries)
        selection = _read(snapshot, rows_file, progress or _no_progress)
        _validate(snapshot, selection)
        splits = split_cases(
            selection.ids,
            selection.groups,
            selection.labels,
            validation_fraction=snapshot.validation_fraction,
            test_fraction=snapshot.test_fraction,
            seed=snapshot.seed,
        )
        _check_splits(snapshot, splits)
    finally:
        for temporary in temporaries:
            _remove(temporary)
    return SnapshotPreview(
        case_count=len(selection.ids),
        patient_count=len(np.unique(selection.groups)),
        label_counts=_label_counts(selection, splits),
        split_sizes={name: int(np.count_nonzero(splits == code)) for code, name in enumerate(SPLIT_NAMES)},
        content_hash=_content_hash(snapshot, selection, splits),
    )


def same_content(model_type: ModelType, content_hash: str) -> DatasetSnapshot | None:
    """The oldest ready snapshot of ``model_type`` with this content hash, built under the cohort's
    current dictionary version, if any (``_twins``)."""
    return (
        _twins(
            DatasetSnapshot.objects.filter(model_type=model_type, status=DatasetSnapshot.Status.READY),
            model_type,
        )
        .filter(content_hash=content_hash)
        .order_by("pk")
        .first()
    )


def _twins(ready: QuerySet[DatasetSnapshot], model_type: ModelType) -> QuerySet[DatasetSnapshot]:
    """The ready snapshots of ``ready`` that a new build would copy: those built under the dictionary
    version a build would record now. The same cases under another version are not the same
    dataset: models trained on it answer under its version (docs/data-dictionary.md)."""
    dictionary = current_dictionary(model_type.cohort)
    return ready.filter(dictionary=dictionary) if dictionary is not None else ready.filter(dictionary__isnull=True)


def ready_twin(snapshot: DatasetSnapshot, *, by: Actor) -> DatasetSnapshot | None:
    """A ready snapshot of the same model type that ``by`` may see and that already has the content
    the unsaved ``snapshot`` would have (``same_content`` of its preview), else None.

    What the API and the admin ask before building a second copy (``prepare_dataset`` too, through
    its preview). Costs nothing when the model type has no ready snapshot yet; else it reads the
    cases as a build's first steps do. A request that cannot be built (too few cases...) has no
    twin: its build fails and records why.
    """
    ready = _twins(
        visible_to(
            DatasetSnapshot.objects.filter(model_type=snapshot.model_type, status=DatasetSnapshot.Status.READY), by
        ),
        snapshot.model_type,
    )
    if not ready.exists():
        return None
    try:
        preview = preview_snapshot(snapshot)
    except DomainError:
        return None
    return ready.filter(content_hash=preview.content_hash).order_by("pk").first()


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
    """``selected_cases`` without the label tests (the build applies them in Python: cheaper)."""
    return _selection(filters).annotate(dataset_label=KT(_label_path(filters)))


def _selection(filters: dict[str, Any]) -> Any:
    # A case its cohort's data dictionary flagged (``Case.dictionary_errors``: a later version or
    # the migration found it wrong) waits for a clinician's correction before it trains anything.
    # A patient of a locked evaluation set (``training.models.locked_set``) trains nothing, in any
    # snapshot of the cohort: the learning loop judges every model on those cases.
    queryset = Case.objects.filter(
        status=Case.Status.APPROVED,
        cohort=filters["cohort"],
        quality_score__gte=filters["min_quality"],
        dictionary_errors=[],
    ).exclude(patient_pseudonym__in=locked_pseudonyms(filters["cohort"]))
    if filters.get("encounter_after"):
        queryset = queryset.filter(encounter_date__gte=filters["encounter_after"])
    if filters.get("encounter_before"):
        queryset = queryset.filter(encounter_date__lte=filters["encounter_before"])
    return queryset


# --- Building ------------------------------------------------------------------------------------

# The file's columns but the split, which is only known once every case has been read.
_ROW_SCHEMA = pa.schema([field for field in SCHEMA if field.name != "split"], metadata=SCHEMA.metadata)
_SPLIT_POSITION = SCHEMA.get_field_index("split")
_SPLIT_VALUES = pa.array(SPLIT_NAMES, type=pa.string())


@dataclass
class _Selection:
    ids: np.ndarray  # int64, ascending
    groups: np.ndarray  # uint64 keys of the patient pseudonyms
    labels: np.ndarray  # int32 codes into label_names
    label_names: list[str]
    policy_version: str
    fingerprints: np.ndarray  # int64: each record's sha256, first 64 bits, to notice a change during the build
    records_sha256: bytes  # of the records' sha256s in id order


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
    snapshot.heartbeat()  # the build has started: from now on the reaper judges it by its heartbeat
    # The dictionary version the snapshot is built under: the cohort's current one as the build
    # starts (a version published during the build is the next snapshot's).
    dictionary = current_dictionary(snapshot.filters["cohort"])
    report = _with_heartbeat(snapshot, progress or _no_progress)
    temporaries: list[str] = []
    stored: str | None = None
    try:
        with _gc_paused():
            path, selection, splits, scan = _build(snapshot, temporaries, report, dictionary=dictionary)
        content_hash = _content_hash(snapshot, selection, splits)
        report("Saving", 0, 1)
        file_sha256, file_size = _file_digest(path)
        with open(path, "rb") as source:
            stored = default_storage.save(f"{STORAGE_FOLDER}/{snapshot.pk}-{content_hash[:12]}.parquet", File(source))
        snapshot.complete(
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
            dictionary=dictionary,
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
        for temporary in temporaries:
            _remove(temporary)


def _build(
    snapshot: DatasetSnapshot, temporaries: list[str], report: Progress, *, dictionary: DataDictionary | None
) -> tuple[str, _Selection, np.ndarray, ScanReport]:
    """Steps 1 to 6: the path of the checked file, the selection, its splits and the scan report.
    Under a ``dictionary`` version, the file holds only the findings and symptoms it defines."""
    rows_file = _temporary_file(snapshot, ".arrow", temporaries)
    known = dictionary_keys(dictionary.parsed) if dictionary is not None else None
    selection = _read(snapshot, rows_file, report, known=known)
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
    path = _temporary_file(snapshot, ".parquet", temporaries)
    _write(rows_file, splits, path, report)
    scan = _scan(path, len(selection.ids), report)
    if not scan.clean:
        raise DatasetBuildError(
            f"The residual-identifier scan found {scan.total} identifier(s) in {_cases_in(scan)} case(s); "
            "the dataset was not kept. The scan report lists each case, field and kind.",
            code="residual_identifiers",
            scan_report=scan.to_json(),
        )
    _check_unchanged(snapshot, selection, report)
    return path, selection, splits, scan


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """The cyclic garbage collector paused, then restored as it was.

    The passes allocate millions of short-lived dicts and lists, a chunk's worth of which live for
    a while: the collector would traverse them again and again (a third of the read pass's time)
    and find no cycle, for the build makes none. Reference counting still frees everything.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _temporary_file(snapshot: DatasetSnapshot, suffix: str, temporaries: list[str]) -> str:
    handle, path = tempfile.mkstemp(prefix=f"dataset-{snapshot.pk}-", suffix=suffix)
    os.close(handle)
    temporaries.append(path)
    return path


def _no_progress(stage: str, done: int, total: int) -> None:
    return None


STAGE_INTERVAL_S = 1.0


def _with_heartbeat(snapshot: DatasetSnapshot, report: Progress) -> Progress:
    """``report``, recording the stage on the snapshot (``heartbeat``) when the stage
    changes and at most every ``STAGE_INTERVAL_S`` within a stage, for the admin's live page (the
    heartbeat moves with it, far more often than the reaper asks).

    A snapshot the reaper failed meanwhile raises ``BuildAbandoned`` here, which stops the build.
    """
    last = time.monotonic()
    last_stage = ""

    def report_and_heartbeat(stage: str, done: int, total: int) -> None:
        nonlocal last, last_stage
        if stage != last_stage or time.monotonic() - last >= STAGE_INTERVAL_S:
            snapshot.heartbeat(stage, done, total)
            last, last_stage = time.monotonic(), stage
        report(stage, done, total)

    return report_and_heartbeat


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
        snapshot.fail(reason=message, scan_report=scan_report)


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)


# --- 1. Read and validate ------------------------------------------------------------------------


# A case's stored row (``cases.rows.stored_row``), as Arrow's JSON reader parses it.
_ROW_JSON_OPTIONS = pa_json.ParseOptions(explicit_schema=stored_row_schema(), unexpected_field_behavior="error")
_DEFAULT_LABEL_FIELD = "diagnosis.code"  # the one the stored row carries ("code")


def _group_key(pseudonym: str) -> int:
    """A 64-bit key for a pseudonym: its first 16 hex digits (it is an HMAC, so uniformly random).

    Two patients sharing a key (about one chance in 10^9 at 200,000 patients) would only be kept
    in the same split, which never breaks patient-disjointness.
    """
    try:
        return int(pseudonym[:16], 16)
    except ValueError:
        return int.from_bytes(hashlib.blake2b(pseudonym.encode(), digest_size=8).digest(), "little")


def _fingerprint(digest: str) -> int:
    """The first 64 bits of a record's sha256 (hex), as a signed int64."""
    value = int(digest[:16], 16)
    return value - (1 << 64) if value >= 1 << 63 else value


def _fingerprints(digests: Sequence[str], joined: str | None = None) -> np.ndarray:
    """``_fingerprint`` of each digest, as int64: decoded all at once when each is 64 hex digits
    (``joined`` is their concatenation, if already made)."""
    joined = "".join(digests) if joined is None else joined
    if len(joined) == 64 * len(digests) and all(len(digest) == 64 for digest in digests):
        try:
            raw = np.frombuffer(bytes.fromhex(joined), dtype=">i8").reshape(-1, 4)
        except ValueError:  # not hex: the per-digest conversion raises for the one that is not
            pass
        else:
            return raw[:, 0].astype(np.int64)
    return np.array([_fingerprint(digest) for digest in digests], dtype=np.int64)


def _chunks(filters: dict[str, Any], *fields: Any) -> Iterator[list[tuple[Any, ...]]]:
    """The selected cases in id order, ``CHUNK_SIZE`` rows of ``fields`` at a time."""
    rows = _selection(filters).order_by("id").values_list(*fields).iterator(chunk_size=CHUNK_SIZE)
    while chunk := list(itertools.islice(rows, CHUNK_SIZE)):
        yield chunk


def _fill_in(ids: Sequence[int], rows: list[str] | None, digests: list[str]) -> None:
    """The dataset row and digest of cases that have none stored (approved before they were
    stored, or written around ``Case.approve``) or a row of an older format, computed from the
    de-identified record. Without ``rows``, only the digests."""
    prefix = STORED_ROW_PREFIX

    def current(row: str | None) -> bool:
        return bool(row and row.startswith(prefix))

    if all(digests) and (rows is None or all(current(row) for row in rows)):
        return
    missing = [
        position
        for position, digest in enumerate(digests)
        if not digest or (rows is not None and not current(rows[position]))
    ]
    records = dict(
        Case.objects.filter(pk__in=[ids[position] for position in missing]).values_list("id", "deidentified")
    )
    for position in missing:
        record = records.get(ids[position])
        if not isinstance(record, dict) or "patient_pseudonym" not in record:
            raise _changed(ids[position])
        if rows is not None:
            rows[position] = stored_row(record)
        digests[position] = record_sha256(record)


def _read(
    snapshot: DatasetSnapshot, rows_file: str, report: Progress, *, known: Mapping[str, frozenset[str]] | None = None
) -> _Selection:
    """One pass over the selection: the arrays for the split, and the rows into ``rows_file``.

    Each case's dataset row and record digest were computed when it was approved
    (``cases.derived.approval_columns``): the pass reads those, not the records, and Arrow's JSON
    reader makes a chunk of rows columns in C. An unlabelled case (no value at the label field)
    is left out: it cannot train a classifier. With ``known`` (``cases.rows.dictionary_keys`` of
    the snapshot's dictionary version), an entry of a column outside it is left out of the row.
    """
    filters = snapshot.filters
    by_code = filters["label_field"] == _DEFAULT_LABEL_FIELD
    fields: list[Any] = ["id", "deid_policy_version", "deid_dataset_row", "deid_sha256"]
    if not by_code:
        fields.append(Cast(KT(_label_path(filters)), TextField()))
    ids, groups, labels, fingerprints = array("q"), array("Q"), array("i"), array("q")
    label_codes: dict[str, int] = {}
    policies: set[str] = set()
    records = hashlib.sha256()
    left_out = 0
    report("Selecting cases", 0, 0)
    with pa.OSFile(rows_file, "wb") as sink, pa.ipc.new_file(sink, _ROW_SCHEMA) as writer:
        for chunk in _chunks(filters, *fields):
            chunk = _current_policy(filters, fields, chunk)
            columns = list(zip(*chunk, strict=True))
            chunk_ids, rows, digests = list(columns[0]), list(columns[2]), list(columns[3])
            _fill_in(chunk_ids, rows, digests)
            table = pa_json.read_json(
                io.BytesIO("\n".join(rows).encode()),
                read_options=_json_read_options(len(rows)),
                parse_options=_ROW_JSON_OPTIONS,
            )
            if len(table) != len(rows) or set(table.column("v").unique().to_pylist()) != {STORED_ROW_FORMAT}:
                raise DatasetBuildError("A stored dataset row has an unknown format.", code="bad_dataset_row")
            label = table.column("code") if by_code else pa.array(columns[4], type=pa.string())
            keep = pc.fill_null(pc.not_equal(label, ""), False)
            if not pc.all(keep).as_py():
                table, label = table.filter(keep), pc.filter(label, keep)
                kept = np.flatnonzero(keep.to_numpy(zero_copy_only=False)).tolist()
                chunk_ids = [chunk_ids[i] for i in kept]
                digests = [digests[i] for i in kept]
                policies.update(columns[1][i] for i in kept)
            else:
                policies.update(columns[1])
            if not len(table):
                continue
            coded = pc.dictionary_encode(label).combine_chunks()
            codes = np.array(
                [label_codes.setdefault(name, len(label_codes)) for name in coded.dictionary.to_pylist()],
                dtype=np.int32,
            )
            labels.frombytes(codes[coded.indices.to_numpy(zero_copy_only=False)].tobytes())
            ids.extend(chunk_ids)
            groups.extend(map(_group_key, table.column("pseudonym").to_pylist()))
            # A digest is 64 hex characters: the concatenation separates them unambiguously.
            joined = "".join(digests)
            fingerprints.frombytes(_fingerprints(digests, joined).tobytes())
            records.update(joined.encode())
            batch, dropped = _row_batch(chunk_ids, table, label, known)
            left_out += dropped
            writer.write_batch(batch)
            report("Selecting cases", len(ids), 0)
    report("Selecting cases", len(ids), len(ids))
    if left_out:
        # The count only: an entry outside the dictionary may be an identifier.
        logger.info("Dataset %s: %d findings or symptoms outside its data dictionary left out.", snapshot.pk, left_out)
    if len(policies) > 1:
        raise DatasetBuildError(
            f"The selected cases were de-identified under different policies ({', '.join(sorted(policies))}); "
            "a dataset needs one. Narrow the filters (dates) or re-approve the older cases.",
            code="mixed_policy_versions",
        )
    return _Selection(
        ids=_numpy(ids, np.int64),
        groups=_numpy(groups, np.uint64),
        labels=_numpy(labels, np.int32),
        label_names=list(label_codes),
        policy_version=policies.pop() if policies else "",
        fingerprints=_numpy(fingerprints, np.int64),
        records_sha256=records.digest(),
    )


def _current_policy(filters: dict[str, Any], fields: list[Any], chunk: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """The chunk, with its cases of an older de-identification policy de-identified again under the
    current one (``cases.redeid``, which reads their raw records in ``cases``) and read again, so a
    build reads current rows only. ``fields`` start with the id and the policy."""
    stale = [row[0] for row in chunk if row[1] != POLICY_VERSION]
    if not stale:
        return chunk
    redeid.redeidentify(stale)
    fresh = {row[0]: row for row in _selection(filters).filter(pk__in=stale).values_list(*fields)}
    # A case that left the selection meanwhile keeps its old row and policy: the build fails as mixed.
    return [fresh.get(row[0], row) for row in chunk]


def _json_read_options(rows: int) -> pa_json.ReadOptions:
    # One block for the chunk (rows are a few hundred bytes), one thread: the machine's cores are
    # the web process's and other workers' too.
    return pa_json.ReadOptions(use_threads=False, block_size=max(4 << 20, rows * 2048))


def _row_batch(
    case_ids: list[int], table: pa.Table, label: Any, known: Mapping[str, frozenset[str]] | None = None
) -> tuple[pa.RecordBatch, int]:
    """The file's row columns (but the split) from a chunk of parsed stored rows: each column from
    its stored keys (``cases.rows.COLUMNS``), the case ids and the snapshot's label from the build.
    With ``known``, the entries of a column it names that are outside its set are left out; also
    answers how many were."""
    columns: list[Any] = []
    left_out = 0
    for column in COLUMNS:
        if column.name == "split":
            continue
        if column.name == "case_id":
            columns.append(pa.array(case_ids, type=pa.int64()))
        elif column.name == "label":
            columns.append(label)
        else:
            lists = [table.column(key).combine_chunks() for key, _type in column.stored]
            if (
                len(lists) == 2
                and not pc.all(pc.equal(pc.list_value_length(lists[0]), pc.list_value_length(lists[1]))).as_py()
            ):
                raise DatasetBuildError(f"A stored dataset row has {column.name} keys and values of different lengths.")
            if known is not None and column.name in known:
                offsets, children, dropped = _known_entries(lists, known[column.name])
                left_out += dropped
                columns.append(
                    pa.MapArray.from_arrays(offsets, *children)
                    if len(lists) == 2
                    else pa.ListArray.from_arrays(offsets, children[0])
                )
            elif len(lists) == 2:  # a mapping, stored as its keys and its values
                columns.append(pa.MapArray.from_arrays(lists[0].offsets, lists[0].flatten(), lists[1].flatten()))
            else:
                columns.append(lists[0])
    arrays = [column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column for column in columns]
    batch = pa.RecordBatch.from_arrays(
        [array.cast(field.type) for array, field in zip(arrays, _ROW_SCHEMA, strict=True)], schema=_ROW_SCHEMA
    )
    return batch, left_out


def _known_entries(lists: list[pa.Array], known: frozenset[str]) -> tuple[pa.Array, list[pa.Array], int]:
    """The entries of the list arrays ``lists`` (of equal lengths, the first holding the keys) whose
    key is in ``known``: their offsets, the kept children, and how many were left out. In C but
    for a count per row."""
    lengths = pc.fill_null(pc.list_value_length(lists[0]), 0).to_numpy(zero_copy_only=False).astype(np.int64)
    flat = [entries.flatten() for entries in lists]
    keep = pc.fill_null(pc.is_in(flat[0], value_set=pa.array(sorted(known), type=pa.string())), False)
    mask = keep.to_numpy(zero_copy_only=False)
    rows = np.repeat(np.arange(len(lengths)), lengths)
    kept_lengths = np.bincount(rows[mask], minlength=len(lengths))
    offsets = pa.array(np.concatenate([[0], np.cumsum(kept_lengths)]), type=pa.int32())
    return offsets, [pc.filter(child, keep) for child in flat], int(len(mask) - np.count_nonzero(mask))


def _numpy(values: array[Any], dtype: Any) -> np.ndarray:
    return np.frombuffer(values, dtype=dtype).copy() if values else np.zeros(0, dtype=dtype)


def _changed(case_id: int) -> DatasetBuildError:
    return DatasetBuildError(
        f"Case {case_id} changed or disappeared during the build; build the dataset again.", code="cases_changed"
    )


def _validate(snapshot: DatasetSnapshot, selection: _Selection) -> None:
    model_type = snapshot.model_type
    count = len(selection.ids)
    if not is_whole_years(snapshot.filters):
        _validate_quietly(snapshot, selection)
        return
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


def _validate_quietly(snapshot: DatasetSnapshot, selection: _Selection) -> None:
    """``_validate`` for a date range finer than whole years: the same refusals, one message.

    The snapshot's error is shown to ML staff, who may not see PHI. A count or a label name for a
    day-wide range (or the difference of two such builds) would tell who was seen that day, so the
    message says only that the selection does not allow a dataset, whatever the reason.
    """
    counts = np.bincount(selection.labels, minlength=len(selection.label_names))
    too_few = len(selection.ids) < max(snapshot.model_type.min_cases_to_train, 1)
    if too_few or len(selection.label_names) < 2 or bool((counts == 1).any()):
        raise DatasetBuildError(
            "The cases in this encounter date range do not allow a dataset (too few cases, too few labels or "
            "a label with a single case); for a range finer than whole years the counts are not shown. "
            "Widen the range.",
            code="selection_too_small",
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


_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical_json(record: Any) -> bytes:
    """The canonical form of a de-identified record: sorted keys, no spaces, UTF-8."""
    return _CANONICAL.encode(record).encode()


def _write(rows_file: str, splits: np.ndarray, path: str, report: Progress) -> None:
    """The rows of ``rows_file`` with their split (``splits`` in the same order), as Parquet into ``path``."""
    total = len(splits)
    written = 0
    with pa.memory_map(rows_file) as source, pq.ParquetWriter(path, SCHEMA) as writer:
        reader = pa.ipc.open_file(source)
        for index in range(reader.num_record_batches):
            batch = reader.get_batch(index)
            codes = pa.array(splits[written : written + batch.num_rows], type=pa.int8())
            split = pa.DictionaryArray.from_arrays(codes, _SPLIT_VALUES)
            columns = batch.columns
            columns.insert(_SPLIT_POSITION, split)
            writer.write_table(pa.Table.from_arrays(columns, schema=SCHEMA))
            written += batch.num_rows
            report("Writing", written, total)


def _content_hash(snapshot: DatasetSnapshot, selection: _Selection, splits: np.ndarray) -> str:
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
    digest.update(selection.ids.astype("<i8").tobytes())
    digest.update(np.asarray(splits, dtype=np.int8).tobytes())
    digest.update(selection.records_sha256)
    return digest.hexdigest()


# --- 3. Scan and check ---------------------------------------------------------------------------


def file_batches(path: str) -> Iterator[CaseBatch]:
    """Every string value of a dataset file, column by column, ``CHUNK_SIZE`` cases a batch.

    Read back from the file. Every column of a string type is included, found from the file's own
    schema, so a column added to the format later is scanned without anyone remembering to: plain
    and dictionary strings, list items as ``field[i]``, map keys as ``field[i].key`` (the key itself
    may be the leak, so the name says where, not what) and string map values as
    ``field[i].value``; any other shape by walking its values.
    """
    parquet = pq.ParquetFile(path)
    fields = [f for f in parquet.schema_arrow if _has_strings(f.type)]
    for batch in parquet.iter_batches(batch_size=CHUNK_SIZE, columns=["case_id", *(f.name for f in fields)]):
        columns: list[StringColumn] = []
        for f in fields:
            columns += _string_columns(f.name, f.type, batch.column(f.name))
        yield CaseBatch(batch.column("case_id").to_pylist(), columns)


def file_cases(path: str) -> Iterator[tuple[int, list[tuple[str, str]]]]:
    """Every string value in a dataset file, per case: ``(case_id, [(field, text), ...])``."""
    for batch in file_batches(path):
        texts: list[list[tuple[str, str]]] = [[] for _ in batch.case_ids]
        for column in batch.columns:
            for position, row in enumerate(column.rows.tolist()):
                text = column.text_of(position)
                if text is not None:
                    texts[row].append((column.field_of(position), text))
        yield from zip(batch.case_ids, texts, strict=True)


def _is_text(data_type: pa.DataType) -> bool:
    if pa.types.is_dictionary(data_type):
        return _is_text(data_type.value_type)
    text: bool = pa.types.is_string(data_type) or pa.types.is_large_string(data_type)
    return text


def _string_columns(name: str, data_type: pa.DataType, values: Any) -> list[StringColumn]:
    if _is_text(data_type):
        return [_coded(name, np.arange(len(values)), values)]
    if (pa.types.is_list(data_type) or pa.types.is_large_list(data_type)) and _is_text(data_type.value_type):
        rows, positions, take = _items(values)
        return [_coded(ItemFields(name, positions), rows, values.values.take(take))]
    if pa.types.is_map(data_type) and _is_text(data_type.key_type):
        rows, positions, take = _items(values)
        columns = [_coded(ItemFields(name, positions, ".key"), rows, values.keys.take(take))]
        if _is_text(data_type.item_type):
            columns.append(_coded(ItemFields(name, positions, ".value"), rows, values.items.take(take)))
            return columns
        if not _has_strings(data_type.item_type):
            return columns
    # Any other shape (structs, nested lists): walk each value.
    names: list[str] = []
    rows_of: list[int] = []
    texts: list[str] = []
    for row, value in enumerate(values.to_pylist()):
        for field_name, text in _strings_in(name, value, data_type):
            names.append(field_name)
            rows_of.append(row)
            texts.append(text)
    return [StringColumn.of(names, rows_of, texts)]


def _coded(fields: str | ItemFields, rows: np.ndarray, strings: Any) -> StringColumn:
    """A string column as the scan takes it: codes into its distinct values (Arrow does the coding)."""
    coded = strings if pa.types.is_dictionary(strings.type) else strings.dictionary_encode()
    codes = coded.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    return StringColumn(fields, rows, codes, coded.dictionary.to_pylist())


def _items(values: Any) -> tuple[np.ndarray, np.ndarray, pa.Array]:
    """A list (or map) column's items: ``(row of each, its index in its list, where it is in the child array)``.

    From the offsets (the list compute kernels do not take maps); a null list has no items.
    """
    offsets = values.offsets.to_numpy()
    lengths = np.diff(offsets)
    if values.null_count:
        lengths[values.is_null().to_numpy(zero_copy_only=False)] = 0
    count = int(lengths.sum())
    rows = np.repeat(np.arange(len(values)), lengths)
    positions = np.arange(count) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return rows, positions, pa.array(np.repeat(offsets[:-1], lengths) + positions)


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
    result = scan_batches(file_batches(path))
    report("Scanning for residual identifiers", result.cases, total)
    return result


def _check_unchanged(snapshot: DatasetSnapshot, selection: _Selection, report: Progress) -> None:
    """Every case of the snapshot is still selected, with the very record it was read with.

    The records are compared by the first 64 bits of their sha256 (stored at approval).
    """
    expected = selection.ids.tolist()
    fingerprints = selection.fingerprints.tolist()
    total = len(expected)
    report("Checking that no case changed", 0, total)
    position = 0
    for chunk in _chunks(snapshot.filters, "id", "deid_sha256"):
        chunk_ids = [row[0] for row in chunk]
        digests = [row[1] for row in chunk]
        _fill_in(chunk_ids, None, digests)
        for case_id, fingerprint in zip(chunk_ids, _fingerprints(digests).tolist(), strict=True):
            if position < total and expected[position] < case_id:
                raise _changed(expected[position])  # retracted, or no longer matching the filters
            if position < total and expected[position] == case_id:
                if fingerprint != fingerprints[position]:
                    raise _changed(case_id)
                position += 1
            # Other cases (unlabelled, or approved since the build started) are not the snapshot's.
    if position < total:
        raise _changed(expected[position])
    report("Checking that no case changed", total, total)


def _file_digest(path: str) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as source:
        while block := source.read(1 << 20):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


def _cases_in(scan: ScanReport) -> int:
    return len({finding["case_id"] for finding in scan.findings}) if scan.findings else 0
