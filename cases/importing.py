"""Bulk import of interchange records (JSON Lines): shared by `import_cases` and the API.

Streaming: lines are read and written in chunks, so memory stays flat for any file size.
Idempotent: a line whose (source, external_id) exists updates that case while it is editable
(submitted or rejected), is "unchanged" when its content hash matches, and is reported as an
error when the case is already approved or retracted and the content differs.
A bad line is reported with its number and reason; the other lines are still imported.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction

from cases.interchange import CaseRecord, RecordError, parse_line, parse_record
from cases.models import Case, CaseTransition

CHUNK_SIZE = 1000
MAX_REPORTED_ERRORS = 1000  # a file of a million bad lines must not make a million-entry report


@dataclass
class LineError:
    line: int
    field: str
    message: str

    def to_json(self) -> dict[str, Any]:
        return {"line": self.line, "field": self.field, "error": self.message}


@dataclass
class ImportReport:
    read: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    failed: int = 0
    errors: list[LineError] = field(default_factory=list)

    def add_error(self, line: int, error: RecordError) -> None:
        self.failed += 1
        if len(self.errors) < MAX_REPORTED_ERRORS:
            self.errors.append(LineError(line, error.field, error.message))

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


def import_lines(
    lines: Iterable[str | bytes],
    *,
    by: Any,
    default_source: str | None = None,
    progress: Callable[[ImportReport], None] | None = None,
) -> ImportReport:
    """Import JSON Lines. Blank lines are skipped (but counted for line numbers)."""

    def records() -> Iterable[tuple[int, Any]]:
        for number, line in enumerate(lines, start=1):
            if isinstance(line, bytes):
                line = line.decode("utf-8", errors="strict") if _is_utf8(line) else None  # type: ignore[assignment]
                if line is None:
                    yield number, RecordError("", "The line is not valid UTF-8.")
                    continue
            if not line.strip():  # type: ignore[union-attr]
                continue
            yield number, line

    return _import(records(), by=by, default_source=default_source, progress=progress, parse=parse_line)


def import_objects(
    objects: Iterable[Any],
    *,
    by: Any,
    default_source: str | None = None,
    progress: Callable[[ImportReport], None] | None = None,
) -> ImportReport:
    """Import already-decoded JSON values (a JSON array body); "line" numbers are 1-based indexes."""
    return _import(
        enumerate(objects, start=1), by=by, default_source=default_source, progress=progress, parse=parse_record
    )


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _import(
    numbered: Iterable[tuple[int, Any]],
    *,
    by: Any,
    default_source: str | None,
    progress: Callable[[ImportReport], None] | None,
    parse: Callable[..., CaseRecord],
) -> ImportReport:
    report = ImportReport()
    chunk: list[tuple[int, CaseRecord]] = []
    for number, item in numbered:
        report.read += 1
        if isinstance(item, RecordError):
            report.add_error(number, item)
            continue
        try:
            chunk.append((number, parse(item, default_source=default_source)))
        except RecordError as error:
            report.add_error(number, error)
            continue
        if len(chunk) >= CHUNK_SIZE:
            _write_chunk(chunk, by=by, report=report)
            chunk = []
            if progress:
                progress(report)
    if chunk:
        _write_chunk(chunk, by=by, report=report)
    if progress:
        progress(report)
    return report


def _write_chunk(chunk: list[tuple[int, CaseRecord]], *, by: Any, report: ImportReport) -> None:
    # The last line wins when a chunk repeats a (source, external_id).
    latest: dict[tuple[str, str], tuple[int, CaseRecord]] = {}
    for number, record in chunk:
        latest[(record.source, record.external_id)] = (number, record)
    report.unchanged += len(chunk) - len(latest)

    existing: dict[tuple[str, str], Case] = {}
    by_source: dict[str, list[str]] = {}
    for source, external_id in latest:
        by_source.setdefault(source, []).append(external_id)
    for source, ids in by_source.items():
        for case in Case.objects.filter(source=source, external_id__in=ids).only(
            "id", "source", "external_id", "status", "record_hash", "revision", "submitted_by_id", "last_edited_by_id"
        ):
            existing[(case.source, case.external_id)] = case

    new_cases = []
    for key, (number, record) in latest.items():
        case = existing.get(key)
        if case is None:
            new_cases.append(Case.build(record, by=by))
            continue
        if case.record_hash == record.content_hash():
            report.unchanged += 1
        elif not case.can_edit():
            report.add_error(
                number,
                RecordError("external_id", f"Case {case.pk} is {case.status}; an imported change cannot replace it."),
            )
        else:
            case.revise(record, by=by, reason="Re-imported with changes.")
            report.updated += 1

    if new_cases:
        with transaction.atomic():
            created = Case.objects.bulk_create(new_cases)
            CaseTransition.objects.bulk_create(
                CaseTransition(case=case, actor=by, from_state="", to_state=Case.Status.SUBMITTED, reason="Imported.")
                for case in created
            )
        report.created += len(created)
