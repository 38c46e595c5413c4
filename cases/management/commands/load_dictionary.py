"""``manage.py load_dictionary FILE``: load a cohort's data dictionary from a JSON file."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from cases.dictionary.files import DictionaryFileError, load_file
from learning_engine.exceptions import DomainError


class Command(BaseCommand):
    help = (
        "Load a data dictionary file (docs/data-dictionary.md): creates the cohort if it is new and a "
        "new version when the dictionary differs from the newest one, published unless --draft."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("files", nargs="+", metavar="FILE", help="JSON dictionary files.")
        parser.add_argument("--draft", action="store_true", help="Leave a new version as a draft.")
        parser.add_argument("--dry-run", action="store_true", help="Check and report; write nothing.")

    def handle(self, *args: Any, files: list[str], draft: bool, dry_run: bool, verbosity: int, **options: Any) -> None:
        results = []
        try:
            with transaction.atomic():
                for index, path in enumerate(files, start=1):
                    result = load_file(path, publish=not draft)
                    results.append(result)
                    if verbosity >= 1:
                        self.stdout.write(f"{index}/{len(files)} {path}: {result.summary()}")
                if dry_run:
                    transaction.set_rollback(True)
        except (DictionaryFileError, DomainError) as error:
            raise CommandError(f"{error} Nothing was loaded.") from None
        created = sum(result.created for result in results)
        if verbosity >= 1:
            note = " (dry run: nothing written)" if dry_run else ""
            self.stdout.write(f"Done: {len(results)} files, {created} new versions{note}.")
