"""``manage.py import_cases FILE``: bulk-import cases from a JSON Lines file (or ``-`` for stdin)."""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError, reset_queries, transaction

from cases import importing
from cases.access_log import AccessLogEntry, record_access
from cases.interchange import MAX_SOURCE_LENGTH

# Who submits imported cases when --submitted-by is not given: a system account, created on
# demand, that cannot log in (inactive, no usable password) and has no roles. Because it is no
# clinician, every clinician may review the imported cases (the four-eyes rule compares people).
SYSTEM_USERNAME = "importer"
MAX_CHUNK_SIZE = 10_000
# Generation-1 collections between two full collections during an import (CPython's default is
# 10). See ``fewer_full_collections``.
FULL_COLLECTION_SPACING = 100


@contextlib.contextmanager
def fewer_full_collections() -> Iterator[None]:
    """Run an import with the garbage collector's full passes kept to what the import itself needs.

    Every chunk's objects outlive the young generations, so the collector would run full passes
    over the whole heap dozens of times per 100,000 lines. What was alive before the import
    (Django, the app registry) stays alive through it, so it is frozen out of those passes. What
    the import holds grows with its input (``import_fhir`` keeps a whole Bundle's encounters
    until the Bundle ends, since resources come in any order, and the de-identification caches
    fill up), and each full pass walks all of it: a full pass only every ``FULL_COLLECTION_SPACING``
    generation-1 passes instead of every 10th. The young generations are collected as usual, so
    the import's cyclic garbage is still freed and its memory stays bounded. The thresholds are put
    back and everything unfrozen afterwards, also when the import fails.
    """
    gc.collect()
    gc.freeze()
    thresholds = gc.get_threshold()
    gc.set_threshold(thresholds[0], thresholds[1], max(thresholds[2], FULL_COLLECTION_SPACING))
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


def _chunk_size(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {value!r}") from None
    if not 1 <= number <= MAX_CHUNK_SIZE:
        raise argparse.ArgumentTypeError(f"must be between 1 and {MAX_CHUNK_SIZE}")
    return number


class _Progress:
    """Progress lines on stdout: every chunk at -v 2, every tenth of the file at -v 1, none at -v 0."""

    def __init__(self, command: BaseCommand, stream: IO[bytes], *, verbosity: int, total_bytes: int | None) -> None:
        self.command = command
        self.stream = stream
        self.verbosity = verbosity
        self.total_bytes = total_bytes
        self.seekable = stream.seekable()
        self.calls = 0
        self.next_percent = 10

    def position(self) -> int | None:
        if not self.seekable:
            return None
        try:
            return self.stream.tell()
        except OSError:
            return None

    def __call__(self, report: importing.ImportReport) -> None:
        self.calls += 1
        if self.verbosity < 1:
            return
        position = self.position()
        percent = None
        if position is not None and self.total_bytes:
            percent = min(100, position * 100 // self.total_bytes)
        if self.verbosity == 1:
            # Without a size (stdin) a line every ten chunks.
            if percent is not None:
                # 100% is left to the summary line that follows.
                if percent < self.next_percent or percent == 100:
                    return
                self.next_percent = (percent // 10 + 1) * 10
            elif self.calls % 10:
                return
        where = ""
        if position is not None and self.total_bytes:
            where = f" ({position / 1e6:.1f}/{self.total_bytes / 1e6:.1f} MB, {percent}%)"
        elif position is not None:
            where = f" ({position / 1e6:.1f} MB)"
        self.command.stdout.write(f"{report.read} lines{where}: {report.summary()}")


class Command(BaseCommand):
    help = (
        "Import cases from a JSON Lines file in the case interchange format (one case per line). "
        "The file is streamed in chunks, so memory stays flat for any size. A line whose source and "
        "external_id already exist updates that case while it is submitted or rejected (a rejected "
        "case goes back to review), is 'unchanged' when its content is the same, and fails when the "
        "case is approved or retracted. Every bad line is reported on stderr with its number and "
        "reason; the other lines are still imported, and the command exits non-zero if any line "
        "failed. Re-running the same file is safe: it creates no duplicates. Imported cases are "
        f"submitted by --submitted-by, or by default by the system account '{SYSTEM_USERNAME}' "
        "(created on first use; it cannot log in and has no roles, so any clinician may review them)."
    )
    stealth_options = ("stdin",)  # call_command(..., stdin=BytesIO(...)) for "-" in tests

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="JSON Lines file (UTF-8), or - to read standard input.")
        parser.add_argument(
            "--source",
            help="Source (submitting site) for lines that have none; a line's own source wins.",
        )
        parser.add_argument(
            "--submitted-by",
            metavar="USERNAME",
            help=f"An active user recorded as the submitter (default: the system account '{SYSTEM_USERNAME}').",
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Validate and count everything inside a transaction that is rolled back: nothing is saved. "
            "On SQLite this holds the database write lock until it finishes.",
        )
        parser.add_argument(
            "--chunk-size",
            type=_chunk_size,
            default=importing.CHUNK_SIZE,
            metavar="N",
            help=f"Lines written per transaction (default {importing.CHUNK_SIZE}, at most {MAX_CHUNK_SIZE}).",
        )

    def handle(
        self,
        *args: Any,
        file: str,
        source: str | None,
        submitted_by: str | None,
        dry_run: bool,
        chunk_size: int,
        verbosity: int,
        **options: Any,
    ) -> None:
        if source is not None:
            self._check_source(source)
        stream, total_bytes, owned = self._open(file, options.get("stdin"))
        self._written: list[int] = []  # the report's case ids, shared as chunks are written
        self._user: Any = None
        try:
            with fewer_full_collections():
                if dry_run:
                    # One transaction around everything, rolled back: the counts are exact (a case
                    # repeated in the file counts as created, then updated) and the system account,
                    # if this run created it, goes too.
                    with transaction.atomic():
                        report = self._import(stream, total_bytes, source, submitted_by, dry_run, chunk_size, verbosity)
                        transaction.set_rollback(True)
                else:
                    report = self._import(stream, total_bytes, source, submitted_by, dry_run, chunk_size, verbosity)
        finally:
            if owned:
                stream.close()
            if not dry_run and self._user is not None:
                # Whatever was written, also when the run stopped half-way: one access-log entry.
                # A dry run keeps nothing and shows no record, so it leaves none.
                self._log_access()

        if verbosity >= 1:
            prefix = "Dry run, nothing saved: " if dry_run else ""
            self.stdout.write(self.style.SUCCESS(f"{prefix}{report.summary(dry_run=dry_run)}."))
        if report.failed:
            done = "checked" if dry_run else "imported"
            raise CommandError(
                f"{report.failed} of {report.read} lines failed (see above); the other lines were {done}."
            )

    def _import(
        self,
        stream: IO[bytes],
        total_bytes: int | None,
        source: str | None,
        submitted_by: str | None,
        dry_run: bool,
        chunk_size: int,
        verbosity: int,
    ) -> importing.ImportReport:
        user = self._submitter(submitted_by)
        self._user = user
        progress = _Progress(self, stream, verbosity=verbosity, total_bytes=total_bytes)
        lines_seen = importing.ImportReport()

        def remember(report: importing.ImportReport) -> None:
            lines_seen.read = report.read
            self._written = report.case_ids
            # With DEBUG on, Django keeps the last 9,000 queries with their SQL (a chunk's insert
            # runs to megabytes): without this, memory would grow with the file.
            reset_queries()
            progress(report)

        kept = "nothing was saved (dry run)" if dry_run else "the chunks written before are kept"
        try:
            # The caller's transaction (dry run) already rolls everything back.
            return importing.import_lines(
                importing.read_lines(stream),
                by=user,
                default_source=source,
                progress=remember,
                on_error=lambda error: self.stderr.write(str(error)),
                chunk_size=chunk_size,
            )
        except KeyboardInterrupt:
            raise CommandError(
                f"Interrupted after about {lines_seen.read} lines; {kept}. "
                "Re-running the same file is safe: it continues where this run stopped.",
                returncode=130,
            ) from None
        except OSError as exc:
            raise CommandError(
                f"Reading the input failed after about {lines_seen.read} lines ({exc}); {kept}."
            ) from exc
        except DatabaseError as exc:
            # The class name only: a database message may quote values of the refused row.
            raise CommandError(
                f"The database refused a write after about {lines_seen.read} lines ({type(exc).__name__}); "
                f"{kept}. Fix the cause and re-run: re-importing is safe. --traceback shows the database's message."
            ) from exc

    def _log_access(self) -> None:
        try:
            record_access(
                action=AccessLogEntry.Action.IMPORT,
                case_ids=self._written,
                actor=self._user,
                channel=AccessLogEntry.Channel.COMMAND,
                path="manage.py import_cases",  # not the file name: it may name a patient
            )
        except DatabaseError as exc:
            self.stderr.write(
                f"The PHI access log could not record this import of {len(self._written)} cases "
                f"({type(exc).__name__}); tell the privacy officer."
            )

    def _check_source(self, source: str) -> None:
        if not source or any(ch.isspace() for ch in source) or len(source) > MAX_SOURCE_LENGTH:
            raise CommandError(f"--source must be 1 to {MAX_SOURCE_LENGTH} characters without spaces.")

    def _open(self, file: str, stdin: IO[bytes] | None) -> tuple[IO[bytes], int | None, bool]:
        """The binary stream, its size when known, and whether we opened it (and must close it)."""
        if file == "-":
            return (stdin if stdin is not None else sys.stdin.buffer), None, False
        path = Path(file)
        try:
            stream = path.open("rb")
        except FileNotFoundError:
            raise CommandError(f"File not found: {file}") from None
        except IsADirectoryError:
            raise CommandError(f"{file} is a directory, not a JSON Lines file.") from None
        except OSError as exc:
            raise CommandError(f"Cannot open {file}: {exc.strerror or exc}") from None
        info = os.fstat(stream.fileno())
        if stat.S_ISDIR(info.st_mode):  # some platforms open directories without complaint
            stream.close()
            raise CommandError(f"{file} is a directory, not a JSON Lines file.")
        return stream, (info.st_size if stat.S_ISREG(info.st_mode) else None), True

    def _submitter(self, username: str | None) -> Any:
        user_model = get_user_model()
        manager = user_model._default_manager
        if username and username != SYSTEM_USERNAME:
            try:
                user = manager.get_by_natural_key(username)  # type: ignore[attr-defined]
            except user_model.DoesNotExist:
                raise CommandError(f"--submitted-by: no user named {username!r}.") from None
            if not user.is_active:
                raise CommandError(f"--submitted-by: user {username!r} is inactive.")
            return user
        user, created = manager.get_or_create(
            **{user_model.USERNAME_FIELD: SYSTEM_USERNAME}, defaults={"is_active": False}
        )
        if created:
            user.set_unusable_password()
            user.save(update_fields=["password"])
        elif user.is_active or user.has_usable_password() or user.is_staff or user.is_superuser:
            raise CommandError(
                f"A login account named {SYSTEM_USERNAME!r} exists, so it cannot serve as the system submitter; "
                "pass --submitted-by USERNAME."
            )
        return user
