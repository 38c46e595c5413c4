"""manage.py reseal_webhook_secrets [--dry-run]: seal every webhook secret under the current SECRET_KEY."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from alerts.models import AlertReceiver
from alerts.sealing import SecretUnreadable, needs_resealing, reseal


class Command(BaseCommand):
    help = (
        "After a SECRET_KEY rotation (the old key in SECRET_KEY_FALLBACKS): re-encrypt every stored webhook "
        "signing secret under the new key, so the fallback can be removed. Secrets no key opens are listed "
        "(rotate those in the admin) and the command exits non-zero."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="Count; change nothing.")

    def handle(self, *args: Any, dry_run: bool = False, **options: Any) -> None:
        resealed = current = 0
        unreadable: list[str] = []
        rows = AlertReceiver.objects.exclude(secret_sealed="").only("pk", "name", "secret_sealed").order_by("pk")
        for receiver in rows.iterator(chunk_size=200):
            if not needs_resealing(receiver.secret_sealed):
                current += 1
                continue
            try:
                sealed = reseal(receiver.secret_sealed)
            except SecretUnreadable:
                unreadable.append(receiver.name)
                continue
            if not dry_run:
                AlertReceiver.objects.filter(pk=receiver.pk, secret_sealed=receiver.secret_sealed).update(
                    secret_sealed=sealed
                )
            resealed += 1
        verb = "would reseal" if dry_run else "resealed"
        self.stdout.write(f"{verb} {resealed}, already under the current key {current}, unreadable {len(unreadable)}.")
        if unreadable:
            raise CommandError(
                f"{len(unreadable)} secret(s) open under no key (rotate them in the admin): {', '.join(unreadable)}"
            )
