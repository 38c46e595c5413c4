"""manage.py monitor --model-type SLUG: take a monitoring snapshot of a model type now."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from monitoring.compute import compute_snapshot, current_scopes
from training.models import ModelType


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


class Command(BaseCommand):
    help = (
        "Compute a monitoring snapshot of the model type's active version and of each running A/B arm now "
        "(the periodic task does the same every MONITORING_INTERVAL_SECONDS), and print one line each."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--model-type", required=True, help="The model type's slug.")

    def handle(self, *args: Any, model_type: str, **options: Any) -> None:
        found = ModelType.objects.filter(slug=model_type).first()
        if found is None:
            raise CommandError(f"No model type {model_type!r}.")
        scopes = current_scopes(found)
        if not scopes:
            raise CommandError(f"{found.slug} has no active version and no running A/B test: nothing to monitor.")
        degraded = 0
        for scope in scopes:
            snapshot = compute_snapshot(scope)
            degraded += snapshot.degraded
            if options["verbosity"] >= 1:
                interval = (
                    ""
                    if snapshot.accuracy_low is None
                    else f" [{_pct(snapshot.accuracy_low)}, {_pct(snapshot.accuracy_high)}]"
                )
                psi = "no reference" if not snapshot.has_reference else f"max PSI {snapshot.max_psi or 0:.3f}"
                self.stdout.write(
                    f"{scope.describe()}: {snapshot.predictions} answers in the window, {snapshot.labelled} with "
                    f"feedback, live accuracy {_pct(snapshot.live_accuracy)}{interval} against offline "
                    f"{_pct(snapshot.offline_accuracy)}, {'DEGRADED' if snapshot.degraded else 'not degraded'}, "
                    f"{psi}, drifted: {', '.join(sorted(snapshot.drifted)) or 'none'} (snapshot {snapshot.pk})."
                )
        if options["verbosity"] >= 1:
            self.stdout.write(f"{len(scopes)} snapshot(s) of {found.slug}, {degraded} degraded.")
