"""``manage.py export_dictionary COHORT``: a cohort's data dictionary as JSON (to load elsewhere)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from cases.dictionary.files import DictionaryFileError, export_document
from cases.models import Cohort


class Command(BaseCommand):
    help = "Write a cohort's newest published dictionary version (or --dictionary-version N) as a JSON dictionary file."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("cohort", metavar="COHORT", help="The cohort's slug.")
        parser.add_argument(
            "--dictionary-version", type=int, dest="dictionary_version", metavar="N", help="A version number."
        )
        parser.add_argument("--output", "-o", metavar="FILE", help="Write here instead of stdout.")

    def handle(
        self, *args: Any, cohort: str, dictionary_version: int | None, output: str | None, **options: Any
    ) -> None:
        found = Cohort.objects.filter(slug=cohort).first()
        if found is None:
            known = ", ".join(Cohort.objects.values_list("slug", flat=True)) or "none"
            raise CommandError(f"No cohort {cohort!r} (known: {known}).")
        try:
            document = export_document(found, version=dictionary_version)
        except DictionaryFileError as error:
            raise CommandError(str(error)) from None
        text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
        if output is None:
            self.stdout.write(text, ending="")
            return
        try:
            Path(output).write_text(text, encoding="utf-8")
        except OSError as error:
            raise CommandError(f"Cannot write {output}: {error.strerror or error}.") from None
        if options["verbosity"] >= 1:
            self.stderr.write(f"Wrote {found.slug} version {document['version']} to {output}.")
