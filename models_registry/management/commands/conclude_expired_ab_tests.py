"""manage.py conclude_expired_ab_tests: conclude running A/B tests past their duration, without promotion."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from models_registry.models import ABTest


class Command(BaseCommand):
    help = (
        "Conclude every running A/B test whose duration has elapsed. The decision of that moment is "
        "recorded; nothing is promoted (a clinical lead activates the winner). The periodic task does "
        "the same every AB_TEST_CHECK_INTERVAL_SECONDS; this command is for operators and cron."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="Say which tests would be concluded.")

    def handle(self, *args: Any, dry_run: bool = False, **options: Any) -> None:
        summary = ABTest.conclude_expired(dry_run=dry_run)
        concluded, skipped = summary["concluded"], summary["skipped"]
        if options["verbosity"] >= 2:
            for pk in concluded:
                self.stdout.write(f"A/B test {pk}: {'would be ' if dry_run else ''}concluded")
        if options["verbosity"] >= 1:
            verb = "would be" if dry_run else "were"
            noun = "A/B test" if len(concluded) == 1 else "A/B tests"
            self.stdout.write(
                f"{len(concluded)} {noun} {verb} concluded {concluded}; {len(skipped)} skipped (ended meanwhile)."
            )
