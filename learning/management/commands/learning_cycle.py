"""manage.py learning_cycle --model-type SLUG [--dry-run]: run (one step of) a learning cycle, or explain it."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from learning import triggers
from learning.cycles import CycleRefused, advance, open_cycle, plan_opening
from learning.models import LearningCycle, LearningPolicy
from learning.tasks import ensure_learning_scheduled
from training.models import ModelType

NEXT_STEP: dict[str, str] = {
    LearningCycle.Status.WAITING_FOR_DATASET: "lock the evaluation set if needed, build the dataset, then submit "
    "the recipe's training jobs (renewing the locked set first when the policy says)",
    LearningCycle.Status.TRAINING: "wait for every job to finish, then choose the candidate on the validation split",
    LearningCycle.Status.EVALUATING: "judge the candidate against the champion on the locked evaluation set",
    LearningCycle.Status.AWAITING_APPROVAL: "wait for a clinical lead to approve the candidate, then start the test",
    LearningCycle.Status.TESTING: "read the A/B test's decision",
    LearningCycle.Status.PROPOSED: "wait for the clinical lead to act on the proposal",
}


class Command(BaseCommand):
    help = (
        "Advance the model type's open learning cycle one step, or open a cycle by hand (trigger 'manual') "
        "and take its first step. --dry-run explains instead: the policy, every trigger with its figure, "
        "and what the next step would do. The periodic task does the same for every model type."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--model-type", required=True, help="The model type's slug.")
        parser.add_argument("--dry-run", action="store_true", help="Explain; change nothing.")

    def handle(self, *args: Any, model_type: str, dry_run: bool = False, **options: Any) -> None:
        found = ModelType.objects.filter(slug=model_type).first()
        if found is None:
            raise CommandError(f"No model type {model_type!r}.")
        policy = LearningPolicy.current(found)
        if policy is None and dry_run:
            self.stdout.write(
                f"{found.slug} has no learning policy: no cycle starts. A clinical lead writes one in the admin."
            )
            return
        if policy is None:
            raise CommandError(f"{found.slug} has no learning policy; a clinical lead writes one in the admin.")
        verbose = options["verbosity"] >= 1
        open_cycle_row = LearningCycle.objects.filter(model_type=found, status__in=LearningCycle.OPEN).first()
        if dry_run:
            self._explain(found, policy, open_cycle_row)
            return
        ensure_learning_scheduled()
        try:
            cycle = open_cycle_row or open_cycle(found, trigger=LearningCycle.Trigger.MANUAL)
        except CycleRefused as exc:
            raise CommandError(exc.message) from None
        if cycle is None:
            raise CommandError(f"Another learning cycle of {found.slug} opened at the same moment; run again.")
        before = cycle.status if open_cycle_row is not None else "opened"
        status = advance(cycle)
        cycle.refresh_from_db()
        if verbose:
            self.stdout.write(f"Learning cycle {cycle.pk} of {found.slug}: {before} -> {status}.")
            if cycle.outcome:
                self.stdout.write(cycle.outcome)
        if status == LearningCycle.Status.FAILED:
            raise CommandError(f"Learning cycle {cycle.pk} failed: {cycle.outcome}")

    def _explain(self, model_type: ModelType, policy: LearningPolicy, cycle: LearningCycle | None) -> None:
        write = self.stdout.write
        write(
            f"{policy} ({'enabled' if policy.enabled else 'disabled'}), {len(policy.grid())} training job(s) a cycle."
        )
        champion = triggers.champion_of(model_type)
        write(f"Champion: {champion.version if champion else 'none (no active version)'}.")
        if cycle is not None:
            write(
                f"Open: learning cycle {cycle.pk} ({cycle.get_kind_display()}, trigger {cycle.trigger}), "
                f"{cycle.status}."
            )
            write(f"Next step: {NEXT_STEP[cycle.status]}.")
            return
        if champion is None:
            write("No cycle can start: a cycle judges candidates against an active version.")
            return
        checks = triggers.evaluate(model_type, policy)
        for check in checks:
            write(f"  {check.trigger}: {'FIRES' if check.fired else 'quiet'}. {check.text}")
        opening = plan_opening(model_type, policy)
        if opening.waiting:
            write(f"Back-off: {opening.waiting}")
        if opening.kind is not None and opening.check is not None and policy.enabled:
            rollback = " (the rollback guard)" if opening.kind == LearningCycle.Kind.ROLLBACK else ""
            write(f"The periodic task would open a cycle now (trigger {opening.check.trigger}){rollback}.")
        else:
            write("The periodic task would open no cycle now; without --dry-run this command opens one by hand.")
