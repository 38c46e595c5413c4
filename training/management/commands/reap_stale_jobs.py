"""manage.py reap_stale_jobs: requeue (or fail) running jobs whose worker stopped heartbeating."""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from training.reaper import reap_stale_jobs, stale_limit


class Command(BaseCommand):
    help = (
        "Requeue running training jobs whose heartbeat is older than JOB_STALE_SECONDS while attempts "
        "remain, else fail them with the reason. The periodic task does the same every "
        "REAPER_INTERVAL_SECONDS; this command is for operators and cron."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="Say what would be reaped; change nothing.")
        parser.add_argument(
            "--loop", action="store_true", help="Keep reaping every REAPER_INTERVAL_SECONDS until interrupted."
        )

    def handle(self, *args: Any, dry_run: bool = False, loop: bool = False, **options: Any) -> None:
        while True:
            summary = reap_stale_jobs(dry_run=dry_run)
            verb = "would be" if dry_run else "were"
            if options["verbosity"] >= 1:
                self.stdout.write(
                    f"Stale limit {int(stale_limit().total_seconds())}s: {len(summary['requeued'])} jobs {verb} "
                    f"requeued {summary['requeued']}, {len(summary['failed'])} {verb} failed {summary['failed']}, "
                    f"{len(summary['skipped'])} skipped."
                )
            if not loop:
                return
            time.sleep(int(settings.REAPER_INTERVAL_SECONDS))
