"""``manage.py validate_cases``: check cases on file against their cohort's current dictionary."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from cases.models import Case, Cohort
from cases.recheck import recheck_cases


class Command(BaseCommand):
    help = (
        "Check cases already on file against their cohort's current (newest published) data dictionary "
        "version: by default the ones flagged for review or never checked. Passing cases record the version; "
        "failing ones keep their content and are flagged (dictionary_errors). Nothing else changes."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--cohort", metavar="SLUG", help="Only this cohort's cases.")
        parser.add_argument("--all", action="store_true", help="Every case, not only flagged or unchecked ones.")
        parser.add_argument("--dry-run", action="store_true", help="Report; write nothing.")

    def handle(self, *args: Any, cohort: str | None, all: bool, dry_run: bool, verbosity: int, **options: Any) -> None:
        cases = Case.objects.all()
        if cohort is not None:
            if not Cohort.objects.filter(slug=cohort).exists():
                raise CommandError(f"No cohort {cohort!r}.")
            cases = cases.filter(cohort=cohort)
        if not all:
            cases = cases.exclude(dictionary_errors=[]) | cases.filter(dictionary__isnull=True)
        report = recheck_cases(cases, dry_run=dry_run)
        if verbosity >= 1:
            note = " (dry run: nothing written)" if dry_run else ""
            self.stdout.write(f"Done: {report.summary()}{note}.")
