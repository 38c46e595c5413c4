"""``manage.py import_fhir FILE_OR_FOLDER``: import cases from FHIR R4 Bundles and NDJSON bulk exports."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from django.core.management.base import CommandError, CommandParser
from django.db import DatabaseError, reset_queries, transaction

from cases.access_log import AccessLogEntry, record_access
from cases.fhir import importing as fhir
from cases.importing import CHUNK_SIZE
from cases.management.commands import import_cases

BUNDLE_SUFFIXES = (".json",)
NDJSON_SUFFIXES = (".ndjson", ".jsonl")


class _Files:
    """The input files in order, each opened when its turn comes, with the bytes read so far."""

    def __init__(self, bundles: list[Path], ndjson: list[Path]) -> None:
        self.bundles = bundles
        self.ndjson = ndjson
        self.total = sum(path.stat().st_size for path in (*bundles, *ndjson))
        self.finished = 0
        self.current: IO[bytes] | None = None
        self.count = len(bundles) + len(ndjson)
        self.numbered = self.count > 1  # one file: positions need no file number

    def done(self) -> int:
        position = 0
        if self.current is not None and not self.current.closed:
            try:
                position = self.current.tell()
            except (OSError, ValueError):
                position = 0
        return self.finished + position

    def _open(self, path: Path) -> IO[bytes]:
        try:
            self.current = path.open("rb")
        except OSError as exc:
            # The file's number only: its name may be a patient's (Synthea names files so).
            raise CommandError(f"Cannot open input file {self._number(path)}: {exc.strerror or exc}") from None
        return self.current

    def _close(self, path: Path) -> None:
        if self.current is not None:
            self.current.close()
        self.current = None
        self.finished += path.stat().st_size

    def _number(self, path: Path) -> int:
        return [*self.bundles, *self.ndjson].index(path) + 1

    def groups(self) -> Iterator[Iterator[fhir.Item]]:
        for path in self.bundles:
            yield self._bundle(path)
        if self.ndjson:
            yield self._ndjson()

    def _bundle(self, path: Path) -> Iterator[fhir.Item]:
        number = self._number(path) if self.numbered else None
        stream = self._open(path)
        try:
            yield from fhir.read_bundle(stream, file=number)
        except fhir.ImportRefused as refused:
            where = f"File {number}" if number else "The file"
            raise CommandError(f"{where}: {refused.message}") from None
        finally:
            self._close(path)

    def _ndjson(self) -> Iterator[fhir.Item]:
        for path in self.ndjson:
            number = self._number(path) if self.numbered else None
            stream = self._open(path)
            try:
                yield from fhir.read_ndjson(stream, file=number)
            finally:
                self._close(path)


class _Progress:
    """Progress lines on stdout: every tenth of the input at -v 1, every call at -v 2, none at -v 0."""

    def __init__(self, command: Command, files: _Files, *, verbosity: int) -> None:
        self.command = command
        self.files = files
        self.verbosity = verbosity
        self.next_percent = 10

    def __call__(self, report: fhir.FhirImportReport) -> None:
        if self.verbosity < 1:
            return
        done, total = self.files.done(), self.files.total
        percent = min(100, done * 100 // total) if total else 100
        if self.verbosity == 1:
            if percent < self.next_percent or percent == 100:
                return
            self.next_percent = (percent // 10 + 1) * 10
        self.command.stdout.write(
            f"{report.resources} resources ({done / 1e6:.1f}/{total / 1e6:.1f} MB, {percent}%): {report.summary()}"
        )


class Command(import_cases.Command):
    help = (
        "Import cases from FHIR R4: a Bundle (collection, transaction or batch; .json), NDJSON bulk-export "
        "files (.ndjson: Patient, Encounter, Observation, Condition), or a folder of them. One case per "
        "Encounter: the Patient gives its identifiers (MRN from the identifier typed MR), the Observations "
        "whose LOINC code the cohort's data dictionary names give its findings (converted to the dictionary's "
        "UCUM units), ICD-10 Conditions its diagnosis and SNOMED CT Conditions its symptoms. Every Bundle is "
        "read entry by entry and written when it ends; the NDJSON files are written together at the end. "
        "Other resource types are counted and skipped. Each problem is reported on stderr with its position "
        "(file number, entry or line) and never a value (errors always, warnings at -v 2); the other "
        "resources still import, and the command "
        "exits non-zero when any resource failed. Re-importing the same export changes nothing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "path", metavar="FILE_OR_FOLDER", help="A .json Bundle, a .ndjson file, or a folder of them."
        )
        parser.add_argument(
            "--source",
            default=fhir.DEFAULT_SOURCE,
            help=f"The record system the export comes from: cases are keyed by it and the Encounter id "
            f"(default {fhir.DEFAULT_SOURCE!r}).",
        )
        parser.add_argument(
            "--cohort",
            metavar="SLUG",
            help="The cohort of every case. Without it, each Encounter goes to the cohort whose published "
            "dictionary knows most of its Observations' LOINC codes.",
        )
        parser.add_argument(
            "--submitted-by",
            metavar="USERNAME",
            help=f"An active user recorded as the submitter (default: the system account "
            f"'{import_cases.SYSTEM_USERNAME}').",
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Read, map and check everything inside a transaction that is rolled back: nothing is saved.",
        )
        parser.add_argument(
            "--chunk-size",
            type=import_cases._chunk_size,
            default=CHUNK_SIZE,
            metavar="N",
            help=f"Cases written per transaction (default {CHUNK_SIZE}, at most {import_cases.MAX_CHUNK_SIZE}).",
        )

    def handle(  # type: ignore[override]
        self,
        *args: Any,
        path: str,
        source: str,
        cohort: str | None,
        submitted_by: str | None,
        dry_run: bool,
        chunk_size: int,
        verbosity: int,
        **options: Any,
    ) -> None:
        self._check_source(source)
        files = self._files(Path(path))
        self._written: list[int] = []
        self._user: Any = None
        try:
            with import_cases.fewer_full_collections():  # a Bundle's encounters are held until it ends
                if dry_run:
                    with transaction.atomic():
                        report = self._run(files, source, cohort, submitted_by, chunk_size, verbosity, dry_run)
                        transaction.set_rollback(True)
                else:
                    report = self._run(files, source, cohort, submitted_by, chunk_size, verbosity, dry_run)
        finally:
            if not dry_run and self._user is not None:
                self._log_access()
        if verbosity >= 1:
            prefix = "Dry run, nothing saved: " if dry_run else ""
            listed = " (-v 2 lists the warnings)" if report.warnings and verbosity < 2 else ""
            self.stdout.write(self.style.SUCCESS(f"{prefix}{report.summary(dry_run=dry_run)}{listed}."))
        if report.errors:
            done = "checked" if dry_run else "imported"
            raise CommandError(
                f"{report.errors} resources failed (see above); the rest was {done}. Re-running is safe."
            )

    def _run(
        self,
        files: _Files,
        source: str,
        cohort: str | None,
        submitted_by: str | None,
        chunk_size: int,
        verbosity: int,
        dry_run: bool,
    ) -> fhir.FhirImportReport:
        user = self._submitter(submitted_by)
        self._user = user
        progress = _Progress(self, files, verbosity=verbosity)
        seen = fhir.FhirImportReport()

        def remember(report: fhir.FhirImportReport) -> None:
            seen.resources = report.resources
            self._written = report.case_ids
            reset_queries()  # with DEBUG on, Django would keep every chunk's SQL
            progress(report)

        kept = "nothing was saved (dry run)" if dry_run else "the cases written before are kept"
        try:
            return fhir.import_resources(
                files.groups(),
                by=user,
                source=source,
                cohort=cohort,
                progress=remember,
                # Errors always; warnings (a missing lab, a value outside the expected range) at -v 2.
                on_problem=lambda problem: (
                    self.stderr.write(str(problem)) if problem.level == "error" or verbosity >= 2 else None
                ),
                chunk_size=chunk_size,
            )
        except fhir.ImportRefused as refused:
            raise CommandError(refused.message) from None
        except KeyboardInterrupt:
            raise CommandError(
                f"Interrupted after about {seen.resources} resources; {kept}. Re-running is safe.", returncode=130
            ) from None
        except DatabaseError as exc:
            raise CommandError(
                f"The database refused a write after about {seen.resources} resources ({type(exc).__name__}); "
                f"{kept}. Fix the cause and re-run: re-importing is safe."
            ) from exc

    def _files(self, path: Path) -> _Files:
        if not path.exists():
            raise CommandError(f"Not found: {path}")
        entries = sorted(item for item in path.iterdir() if item.is_file()) if path.is_dir() else [path]
        bundles = [item for item in entries if item.suffix.lower() in BUNDLE_SUFFIXES]
        ndjson = [item for item in entries if item.suffix.lower() in NDJSON_SUFFIXES]
        if not path.is_dir() and not bundles and not ndjson:
            raise CommandError("The file must be a .json Bundle or a .ndjson (bulk export) file.")
        if not bundles and not ndjson:
            raise CommandError("The folder holds no .json or .ndjson file.")
        if not all(os.access(item, os.R_OK) for item in (*bundles, *ndjson)):
            raise CommandError("Some input files cannot be read (permissions).")
        return _Files(bundles, ndjson)

    def _log_access(self) -> None:
        try:
            record_access(
                action=AccessLogEntry.Action.IMPORT,
                case_ids=self._written,
                actor=self._user,
                channel=AccessLogEntry.Channel.COMMAND,
                path="manage.py import_fhir",  # not the path: a file name may name a patient
            )
        except DatabaseError as exc:
            self.stderr.write(
                f"The PHI access log could not record this import of {len(self._written)} cases "
                f"({type(exc).__name__}); tell the privacy officer."
            )
