"""`manage.py load_demo`: the demo users and the demo cases (development only).

Safe to run again: users are reset to their documented passwords and roles; cases are imported
through the real import path (unchanged records are recognised by their content hash) and only
the still-submitted ones are reviewed.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from cases import demo
from cases.dictionary.files import DictionaryFileError, load_demo_dictionaries
from cases.importing import ImportReport, import_objects
from cases.signals import demo_loaded

if TYPE_CHECKING:
    from learning_engine.actors import Actor

MAX_RESPIRATORY_CASES = 1_000_000  # a typo of a few zeros should not fill the disk
SHOWN_ERRORS = 5


class Command(BaseCommand):
    help = (
        "Create the demo users (one per role, published passwords) and the demo cases: the Breast "
        "Cancer Wisconsin data shipped with scikit-learn and a synthetic respiratory cohort, most "
        "approved by a second clinician. Development only: refuses to run with DEBUG off."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--respiratory-cases",
            type=int,
            default=demo.DEFAULT_RESPIRATORY_CASES,
            metavar="N",
            help=f"How many synthetic respiratory cases (default {demo.DEFAULT_RESPIRATORY_CASES}).",
        )
        parser.add_argument("--skip-cases", action="store_true", help="Only create or reset the demo users.")
        parser.add_argument(
            "--force",
            action="store_true",
            help="Run even with DEBUG off. The demo users' passwords are public: never on a real site.",
        )

    def handle(
        self, *args: Any, respiratory_cases: int, skip_cases: bool, force: bool, verbosity: int, **options: Any
    ) -> None:
        if not settings.DEBUG and not force:
            raise CommandError(
                "load_demo creates users whose passwords are published, so it refuses to run with DEBUG off. "
                "Set DEBUG=1 for a development database, or pass --force if you really mean it."
            )
        if not 0 <= respiratory_cases <= MAX_RESPIRATORY_CASES:
            raise CommandError(f"--respiratory-cases must be between 0 and {MAX_RESPIRATORY_CASES}.")
        self.verbosity = verbosity

        try:
            users = demo.ensure_demo_users()
        except demo.DemoSetupError as error:
            raise CommandError(str(error)) from None
        summary = f"{len(users)} demo users"
        # The cohorts' dictionaries first: cases are validated against them.
        try:
            loaded = load_demo_dictionaries(by=users.get(demo.DICTIONARY_OWNER))
        except DictionaryFileError as error:
            raise CommandError(str(error)) from None
        summary += "; dictionaries: " + ", ".join(result.summary() for result in loaded)

        if not skip_cases:
            submitter = users[demo.SUBMITTER]
            imported = ImportReport()
            for label, total, records in (
                (demo.BREAST_COHORT, demo.BREAST_COUNT, demo.breast_mass_records()),
                (demo.RESPIRATORY_COHORT, respiratory_cases, demo.respiratory_records(respiratory_cases)),
            ):
                self._import(label, total, records, by=submitter, into=imported)
            self._info("Reviewing the submitted demo cases as the second clinician (four-eyes)...")
            review = demo.review_cases(reviewer=users[demo.REVIEWER], progress=self._review_progress)
            summary += (
                f"; cases: {imported.read} read, {imported.created} created, {imported.updated} updated, "
                f"{imported.unchanged} unchanged, {imported.failed} failed; review: {review.approved} approved, "
                f"{review.rejected} rejected, {review.left} left submitted, {review.skipped} skipped"
            )

        # The apps built on cases add their demo objects (model types, ...): cases cannot import them.
        for _receiver, message in demo_loaded.send(sender=type(self), users=users, verbosity=verbosity):
            if message:
                summary += f"; {message}"

        self._info(f"Done: {summary}.")
        self._print_users()

    # --- Steps -----------------------------------------------------------------------------------

    def _import(
        self, label: str, total: int, records: Iterable[dict[str, Any]], *, by: Actor, into: ImportReport
    ) -> None:
        self._info(f"Importing {total} {label} cases...")

        shown = [-1]

        def progress(report: ImportReport) -> None:
            # The importer reports after every chunk and once at the end: show each count once.
            if report.read != shown[0]:
                shown[0] = report.read
                self._info(f"  {label}: {report.read}/{total}")

        report = import_objects(records, by=by, progress=progress if self.verbosity >= 1 else None)
        for name in ("read", "created", "updated", "unchanged", "failed"):
            setattr(into, name, getattr(into, name) + getattr(report, name))
        if report.failed and self.verbosity >= 1:
            # Two reasons, both expected: the respiratory demo plants temperatures written in
            # Fahrenheit, which its data dictionary's hard limits refuse (the point of them); and
            # records that no longer match approved cases of an earlier run (a newer Faker, say),
            # which are left as they are.
            self.stderr.write(
                self.style.WARNING(
                    f"  {report.failed} {label} records were not imported: refused by the cohort's data "
                    "dictionary (the demo plants temperatures in Fahrenheit), or demo cases of an earlier run "
                    "that differ and cannot be replaced (those cases are left as they are)."
                )
            )
            for error in report.errors[: SHOWN_ERRORS if self.verbosity < 2 else None]:
                self.stderr.write(f"    record {error.line}: {error.field}: {error.message}")

    def _review_progress(self, report: demo.ReviewReport) -> None:
        self._info(f"  reviewed {report.done}/{report.total}")

    def _print_users(self) -> None:
        if self.verbosity < 1:
            return
        rows = [("username", "role", "password")] + [(u.username, u.role, u.password) for u in demo.DEMO_USERS]
        widths = [max(len(row[column]) for row in rows) for column in range(3)]

        def line(row: tuple[str, str, str]) -> str:
            return "  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()

        self.stdout.write("")
        self.stdout.write("Demo users (development only: these passwords are public):")
        self.stdout.write(self.style.MIGRATE_HEADING(line(rows[0])))
        for row in rows[1:]:
            self.stdout.write(line(row))

    def _info(self, message: str) -> None:
        if self.verbosity >= 1:
            self.stdout.write(message)
