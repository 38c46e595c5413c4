"""A learning cycle: one automatic attempt to improve (or protect) a model type, start to finish.

A cycle is a state machine advanced step by step by the periodic task (``learning.cycles.advance``)
and by ``manage.py learning_cycle``; no step waits for training. Training is asynchronous (the
worker's jobs), so a cycle records what it waits for and the next step looks again.

Candidate cycles::

    waiting_for_dataset -> training -> evaluating -> rejected                     (outside the envelope)
                                                  -> awaiting_approval -> testing (policy: a person approves)
                                                  -> testing -> proposed -> promoted | not_promoted
                                                             -> promoted          (policy: auto_promote)
                                                             -> not_promoted      (the test kept the champion)

Rollback cycles (the guard, on a degraded champion)::

    evaluating -> proposed -> rolled_back | not_promoted
               -> rolled_back                                      (policy: perform)
               -> rejected                                         (the previous version fails the envelope)

Any open state -> failed (with the reason) or cancelled (by a person). At most one open cycle per
model type: a conditional unique constraint, so two triggers firing at once open one cycle.
Every change writes a ``CycleTransition`` row (actor empty for the periodic task).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from django.conf import settings
from django.db import models, transaction
from django.db.models import Q
from django.utils import timezone

from learning_engine.audit import AuditEntry
from learning_engine.transitions import check_allowed, claim

if TYPE_CHECKING:
    from learning_engine.actors import SystemActor


class LearningCycle(models.Model):
    class Kind(models.TextChoices):
        CANDIDATE = "candidate", "Candidate (retrain and test)"
        ROLLBACK = "rollback", "Rollback guard"

    class Trigger(models.TextChoices):
        NEW_CASES = "new_cases", "New approved cases"
        DEGRADATION = "degradation", "Champion degraded"
        DRIFT = "drift", "Input drift"
        SCHEDULE = "schedule", "Schedule"
        MANUAL = "manual", "Manual (learning_cycle command)"

    class Status(models.TextChoices):
        WAITING_FOR_DATASET = "waiting_for_dataset", "Waiting for the dataset"
        TRAINING = "training", "Training candidates"
        EVALUATING = "evaluating", "Evaluating against the envelope"
        AWAITING_APPROVAL = "awaiting_approval", "Awaiting a clinical lead's approval of the candidate"
        TESTING = "testing", "A/B testing"
        PROPOSED = "proposed", "Proposed to the clinical lead"
        PROMOTED = "promoted", "Promoted"
        ROLLED_BACK = "rolled_back", "Rolled back"
        NOT_PROMOTED = "not_promoted", "Not promoted"
        REJECTED = "rejected", "Rejected by the envelope"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    OPEN: ClassVar[frozenset[str]] = frozenset(
        {
            Status.WAITING_FOR_DATASET,
            Status.TRAINING,
            Status.EVALUATING,
            Status.AWAITING_APPROVAL,
            Status.TESTING,
            Status.PROPOSED,
        }
    )
    TRANSITIONS: ClassVar[dict[str, frozenset[str]]] = {
        Status.TRAINING: frozenset({Status.WAITING_FOR_DATASET}),
        Status.EVALUATING: frozenset({Status.TRAINING}),
        Status.AWAITING_APPROVAL: frozenset({Status.EVALUATING}),
        Status.TESTING: frozenset({Status.EVALUATING, Status.AWAITING_APPROVAL}),
        Status.PROPOSED: frozenset({Status.TESTING, Status.EVALUATING}),
        Status.PROMOTED: frozenset({Status.TESTING, Status.PROPOSED}),
        Status.ROLLED_BACK: frozenset({Status.EVALUATING, Status.PROPOSED}),
        Status.NOT_PROMOTED: frozenset({Status.TESTING, Status.PROPOSED, Status.AWAITING_APPROVAL}),
        Status.REJECTED: frozenset({Status.EVALUATING}),
        Status.FAILED: OPEN,
        Status.CANCELLED: OPEN,
    }

    model_type = models.ForeignKey("training.ModelType", on_delete=models.PROTECT, related_name="learning_cycles")
    policy = models.ForeignKey("learning.LearningPolicy", on_delete=models.PROTECT, related_name="cycles")
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.CANDIDATE)
    trigger = models.CharField(max_length=16, choices=Trigger.choices)
    trigger_detail = models.JSONField(default=dict, blank=True, help_text="The figures that fired the trigger.")
    status = models.CharField(max_length=32, choices=Status.choices, editable=False, db_index=True)

    champion = models.ForeignKey(
        "models_registry.ModelVersion", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    locked_set = models.ForeignKey(
        "training.LockedEvaluationSet", on_delete=models.PROTECT, null=True, blank=True, related_name="cycles"
    )
    locked_renewal = models.JSONField(
        default=dict,
        blank=True,
        help_text="Whether the cycle's first step renewed the locked set: why, the sets, case counts, fresh share.",
    )
    dataset = models.ForeignKey(
        "training.DatasetSnapshot", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    jobs = models.ManyToManyField("training.TrainingJob", blank=True, related_name="+")
    candidates = models.JSONField(
        default=list, blank=True, help_text="Per job: algorithm, hyperparameters, validation accuracy, version."
    )
    candidate = models.ForeignKey(
        "models_registry.ModelVersion",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text="The chosen candidate (rollback cycles: the version to roll back to).",
    )
    envelope = models.JSONField(default=dict, blank=True, help_text="Every criterion with its figure and result.")
    envelope_passed = models.BooleanField(null=True, blank=True)
    ab_test = models.ForeignKey(
        "models_registry.ABTest",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name="A/B test",
    )
    test_decision = models.CharField(max_length=16, blank=True)
    outcome = models.TextField(blank=True, help_text="What the cycle ended with, in words.")

    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text="Who started it by hand; empty for the periodic task.",
    )
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "learning cycle"
        constraints = [
            models.UniqueConstraint(
                fields=["model_type"],
                condition=Q(
                    status__in=[
                        "waiting_for_dataset",
                        "training",
                        "evaluating",
                        "awaiting_approval",
                        "testing",
                        "proposed",
                    ]
                ),
                name="one_open_learning_cycle_per_model_type",
            ),
        ]
        permissions = [("run_learningcycle", "Can start, advance and cancel learning cycles")]

    def __str__(self) -> str:
        return f"Learning cycle {self.pk} of {self.model_type} ({self.status})"

    @property
    def is_open(self) -> bool:
        return self.status in self.OPEN

    def can_cancel(self) -> bool:
        return self.is_open

    def move(self, target: str, *, by: SystemActor = None, reason: str = "", **changes: Any) -> None:
        """``status -> target`` (``TRANSITIONS``), claimed on the status read, with ``changes`` in the
        same UPDATE and an audit row. A stale copy raises ``TransitionError`` (409)."""
        check_allowed(self.TRANSITIONS, current=self.status, target=target, label=str(self))
        source = self.status
        if target not in self.OPEN:
            changes.setdefault("finished_at", timezone.now())
        with transaction.atomic():
            claim(self, expected={"status": source}, status=target, updated_at=timezone.now(), **changes)
            CycleTransition.objects.create(cycle=self, actor=by, from_state=source, to_state=target, reason=reason)

    def fail(self, *, reason: str) -> None:
        """Any open state -> failed, with the reason as its outcome (the periodic task's steps)."""
        self.move(self.Status.FAILED, reason=reason, outcome=f"Failed: {reason}")

    def cancel(self, *, by: SystemActor, reason: str) -> None:
        """Any open state -> cancelled. Jobs still queued or running are left to finish; nothing
        they make is tested or served (the cycle no longer acts on them)."""
        self.move(self.Status.CANCELLED, by=by, reason=reason, outcome=f"Cancelled: {reason}")


class CycleTransition(AuditEntry):
    cycle = models.ForeignKey(LearningCycle, on_delete=models.PROTECT, related_name="transitions")

    class Meta(AuditEntry.Meta):
        verbose_name = "learning cycle transition"
