"""``manage.py redeidentify_cases``: bring every stored de-identified record to the current policy."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from cases import redeid
from cases.deid.safe_harbor import POLICY_VERSION


class Command(BaseCommand):
    help = (
        "De-identify again, under the current policy, every approved or retracted case whose stored "
        "de-identified record was made under an older one (run after an upgrade that changes the policy)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="count the cases, change nothing")

    def handle(self, *args: Any, dry_run: bool = False, verbosity: int = 1, **options: Any) -> None:
        total = redeid.stale().count()

        def progress(done: int) -> None:
            if verbosity >= 2:
                self.stdout.write(f"{done}/{total}")

        done = redeid.redeidentify_stale(progress=progress, dry_run=dry_run)
        verb = "would be de-identified" if dry_run else "de-identified"
        self.stdout.write(f"{done} of {total} case(s) of an older policy {verb} again under {POLICY_VERSION}.")
