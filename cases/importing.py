"""Bulk import of interchange records (JSON Lines): shared by `import_cases` and the API.

Streaming: lines are read and written in chunks, so memory stays flat for any file size.
Sequential semantics: the result is the same as importing the lines one by one, in order. A line
whose (source, external_id) exists updates that case while it is editable (submitted or
rejected; a rejected case goes back to submitted), is "unchanged" when its content hash matches,
and is an error when the case is already approved or retracted and the content differs.
A bad line is reported with its number and reason; the other lines are still imported.

Writes: one transaction per chunk (the new cases, their audit rows, the updates), so a chunk is
all or nothing and the database write lock is held only while a chunk is written. Parsing,
quality scoring and hashing happen before the transaction. A chunk that loses a race to a
concurrent import of the same cases (unique constraint) is rolled back and retried, seeing the
other import's rows as existing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

from django.db import IntegrityError, transaction

from cases.dictionary.checking import DictionaryCache, RecordRefused, check_record
from cases.interchange import CaseRecord, RecordError, parse_line, parse_record
from cases.models import CONTENT_FIELDS, Case, CaseTransition, DataDictionary
from learning_engine.exceptions import DomainError

if TYPE_CHECKING:
    from learning_engine.actors import Actor

CHUNK_SIZE = 1000
MAX_REPORTED_ERRORS = 1000  # a file of a million bad lines must not make a million-entry report
# The longest line taken (a 50,000-character note is at most 200 kB of UTF-8). A longer "line" is
# skipped without being held in memory: a file without newlines must not exhaust memory.
MAX_LINE_BYTES = 1024 * 1024
WRITE_ATTEMPTS = 3
IMPORT_REASON = "Imported."
REIMPORT_REASON = "Re-imported with changes."
_BOM = b"\xef\xbb\xbf"
_LOOKUP_BATCH = 900


@dataclass
class LineError:
    line: int
    field: str
    message: str

    def to_json(self) -> dict[str, Any]:
        return {"line": self.line, "field": self.field, "error": self.message}

    def __str__(self) -> str:
        where = f"{self.field}: " if self.field else ""
        return f"line {self.line}: {where}{self.message}"


@dataclass
class ImportReport:
    read: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    failed: int = 0
    errors: list[LineError] = field(default_factory=list)
    # The cases the import created, updated or found unchanged: for the PHI access log, never answered.
    case_ids: list[int] = field(default_factory=list)

    def add_error(self, line: int, error: RecordError) -> LineError:
        self.failed += 1
        line_error = LineError(line, error.field, error.message)
        if len(self.errors) < MAX_REPORTED_ERRORS:
            self.errors.append(line_error)
        return line_error

    def summary(self, *, dry_run: bool = False) -> str:
        if dry_run:  # nothing was created: say what the import would do
            return (
                f"{self.read} read, would create {self.created}, would update {self.updated}, "
                f"{self.unchanged} unchanged, {self.failed} failed"
            )
        return (
            f"{self.read} read, {self.created} created, {self.updated} updated, "
            f"{self.unchanged} unchanged, {self.failed} failed"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "read": self.read,
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "failed": self.failed,
            "errors": [error.to_json() for error in self.errors],
            "errors_truncated": self.failed > len(self.errors),
        }


ProgressCallback = Callable[[ImportReport], None]
ErrorCallback = Callable[[LineError], None]


def read_lines(stream: IO[bytes], *, max_line_bytes: int = MAX_LINE_BYTES) -> Iterator[bytes | RecordError]:
    """The lines of a binary stream, one at a time; a line over the limit becomes a ``RecordError``.

    For ``import_lines``: memory stays bounded by ``max_line_bytes`` whatever the stream holds.
    """
    while True:
        line = stream.readline(max_line_bytes + 1)
        if not line:
            return
        if len(line) > max_line_bytes and not line.endswith(b"\n"):
            # Skip the rest of the line in bounded pieces.
            while (rest := stream.readline(max_line_bytes)) and not rest.endswith(b"\n"):
                pass
            yield RecordError("", f"The line is longer than {max_line_bytes} bytes.")
            continue
        yield line


def import_lines(
    lines: Iterable[str | bytes | RecordError],
    *,
    by: Actor,
    default_source: str | None = None,
    progress: ProgressCallback | None = None,
    on_error: ErrorCallback | None = None,
    dry_run: bool = False,
    chunk_size: int = CHUNK_SIZE,
) -> ImportReport:
    """Import JSON Lines (``str`` or UTF-8 ``bytes``; a ``RecordError`` item is a line the reader
    refused). Blank lines are skipped but counted for line numbers.

    ``progress`` is called after each written chunk and at the end; ``on_error`` for every failed
    line (the report keeps only the first ``MAX_REPORTED_ERRORS``). ``dry_run`` does all the work
    inside a transaction that is rolled back, so its counts are exact and nothing is kept.
    """

    def numbered() -> Iterator[tuple[int, Any]]:
        for number, line in enumerate(lines, start=1):
            if isinstance(line, bytes):
                if number == 1 and line.startswith(_BOM):
                    line = line[len(_BOM) :]
                try:
                    line = line.decode("utf-8")
                except UnicodeDecodeError:
                    yield number, RecordError("", "The line is not valid UTF-8.")
                    continue
            elif isinstance(line, str) and number == 1:
                line = line.removeprefix("\ufeff")
            if isinstance(line, str) and (not line or line.isspace()):
                continue
            yield number, line

    return _run(
        numbered(),
        parse=parse_line,
        by=by,
        default_source=default_source,
        progress=progress,
        on_error=on_error,
        dry_run=dry_run,
        chunk_size=chunk_size,
    )


def import_objects(
    objects: Iterable[Any],
    *,
    by: Actor,
    default_source: str | None = None,
    progress: ProgressCallback | None = None,
    on_error: ErrorCallback | None = None,
    dry_run: bool = False,
    chunk_size: int = CHUNK_SIZE,
) -> ImportReport:
    """Import already-decoded JSON values (a JSON array body); "line" numbers are 1-based indexes."""
    return _run(
        enumerate(objects, start=1),
        parse=parse_record,
        by=by,
        default_source=default_source,
        progress=progress,
        on_error=on_error,
        dry_run=dry_run,
        chunk_size=chunk_size,
    )


def _run(numbered: Iterable[tuple[int, Any]], *, dry_run: bool, **kwargs: Any) -> ImportReport:
    if not dry_run:
        return _Importer(**kwargs).run(numbered)
    with transaction.atomic():
        report = _Importer(**kwargs).run(numbered)
        transaction.set_rollback(True)
    return report


@dataclass
class _ChunkResult:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    errors: list[tuple[int, RecordError]] = field(default_factory=list)
    case_ids: list[int] = field(default_factory=list)


class _Importer:
    def __init__(
        self,
        *,
        parse: Callable[..., CaseRecord],
        by: Actor,
        default_source: str | None,
        progress: ProgressCallback | None,
        on_error: ErrorCallback | None,
        chunk_size: int,
    ) -> None:
        if chunk_size < 1:
            raise ValueError("chunk_size must be at least 1.")
        self.parse = parse
        self.by = by
        self.default_source = default_source
        self.progress = progress
        self.on_error = on_error
        self.chunk_size = chunk_size
        self.report = ImportReport()
        self.chunk: dict[tuple[str, str], tuple[int, CaseRecord, DataDictionary]] = {}
        self.dictionaries = DictionaryCache()
        self.chunk_errors: list[tuple[int, RecordError]] = []
        self.reported = -1  # report.read at the last progress call

    def run(self, numbered: Iterable[tuple[int, Any]]) -> ImportReport:
        for number, item in numbered:
            self.report.read += 1
            if isinstance(item, RecordError):
                self.chunk_errors.append((number, item))
            else:
                try:
                    record = self.parse(item, default_source=self.default_source)
                    # The cohort's data dictionary; a refusal is one report line naming every
                    # problem (unknown keys by position only).
                    dictionary = check_record(record, cache=self.dictionaries).dictionary
                except RecordError as error:
                    self.chunk_errors.append((number, error))
                except RecordRefused as refused:
                    # One problem: its field beside its message (not named twice); several: all in one line.
                    only = refused.issues[0] if len(refused.issues) == 1 else None
                    field_name, message = (only.field, only.message) if only else ("", refused.summary())
                    self.chunk_errors.append((number, RecordError(field_name, message)))
                else:
                    key = (record.source, record.external_id)
                    # A repeated case in one chunk: write what came before first, so the later
                    # line updates the earlier one exactly as a line-by-line import would.
                    if key in self.chunk:
                        self.flush()
                    self.chunk[key] = (number, record, dictionary)
            if len(self.chunk) + len(self.chunk_errors) >= self.chunk_size:
                self.flush()
        self.flush()
        if self.progress and self.reported != self.report.read:
            self.progress(self.report)
        return self.report

    def flush(self) -> None:
        if not self.chunk and not self.chunk_errors:
            return
        result = _write_chunk(list(self.chunk.values()), by=self.by) if self.chunk else _ChunkResult()
        self.report.created += result.created
        self.report.updated += result.updated
        self.report.unchanged += result.unchanged
        self.report.case_ids.extend(result.case_ids)
        # Report in line order, whether a line failed parsing or writing.
        for number, error in sorted(self.chunk_errors + result.errors, key=lambda item: item[0]):
            line_error = self.report.add_error(number, error)
            if self.on_error:
                self.on_error(line_error)
        self.chunk = {}
        self.chunk_errors = []
        if self.progress:
            self.reported = self.report.read
            self.progress(self.report)


def _write_chunk(chunk: list[tuple[int, CaseRecord, DataDictionary]], *, by: Actor) -> _ChunkResult:
    for attempt in range(1, WRITE_ATTEMPTS + 1):
        try:
            return _try_write_chunk(chunk, by=by)
        except IntegrityError:
            # Another import created some of these cases after we looked. The chunk was rolled
            # back as a whole; looking again turns those lines into updates.
            if attempt == WRITE_ATTEMPTS:
                raise
    raise AssertionError("unreachable")


def _existing_cases(keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], Case]:
    by_source: dict[str, list[str]] = {}
    for source, external_id in keys:
        by_source.setdefault(source, []).append(external_id)
    existing: dict[tuple[str, str], Case] = {}
    for source, ids in by_source.items():
        # Slices keep each query under the smallest SQLite parameter limit (999).
        for start in range(0, len(ids), _LOOKUP_BATCH):
            cases = Case.objects.filter(source=source, external_id__in=ids[start : start + _LOOKUP_BATCH]).only(
                "id",
                "source",
                "external_id",
                "status",
                "record_hash",
                "revision",
                "submitted_by_id",
                "last_edited_by_id",
                # An update's audit row names the fields it changed, so it compares their values.
                *CONTENT_FIELDS,
            )
            for case in cases:
                existing[(case.source, case.external_id)] = case
    return existing


def _try_write_chunk(chunk: list[tuple[int, CaseRecord, DataDictionary]], *, by: Actor) -> _ChunkResult:
    result = _ChunkResult()
    existing = _existing_cases((record.source, record.external_id) for _, record, _dictionary in chunk)
    new_cases: list[Case] = []
    updates: list[tuple[int, Case, CaseRecord, DataDictionary]] = []
    for number, record, dictionary in chunk:
        case = existing.get((record.source, record.external_id))
        if case is None:
            new_cases.append(Case.build(record, by=by, dictionary=dictionary))
        elif case.record_hash == record.content_hash():
            result.unchanged += 1
            result.case_ids.append(case.pk)
        elif not case.can_edit():
            result.errors.append(
                (number, RecordError("external_id", f"Case {case.pk} is {case.status}; an import cannot change it."))
            )
        else:
            updates.append((number, case, record, dictionary))

    with transaction.atomic():
        if new_cases:
            created = Case.objects.bulk_create(new_cases)
            # Ids rather than instances: skips the related-object checks per row.
            CaseTransition.objects.bulk_create(
                [
                    CaseTransition(
                        case_id=case.pk,
                        actor_id=by.pk,
                        from_state="",
                        to_state=Case.Status.SUBMITTED,
                        reason=IMPORT_REASON,
                    )
                    for case in created
                ]
            )
            result.created = len(created)
            result.case_ids.extend(case.pk for case in created)
        for number, case, record, dictionary in updates:
            try:
                changed = case.revise(record, by=by, reason=REIMPORT_REASON, dictionary=dictionary)
            except DomainError as error:
                # Approved or edited by someone else since we looked; revise wrote nothing.
                result.errors.append((number, RecordError("external_id", error.message)))
                continue
            if changed:
                result.updated += 1
            else:
                result.unchanged += 1
            result.case_ids.append(case.pk)
    return result
