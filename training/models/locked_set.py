"""A model type's locked evaluation set: patients kept out of every training set.

The learning loop (``learning``) judges a candidate against the champion on the same cases, cases
neither model trained on. Those cases are chosen once (``learning.locked``) and recorded here; the
dataset builder (``training.datasets``) leaves out every case of a locked patient, in every
snapshot of the cohort, so no later training set holds one of them, whatever model type it is for.

The set lives in ``training`` because the builder must read it (the layers import downwards only).
It is patient-disjoint by construction: it names patients (keyed pseudonyms, never identifiers),
and the evaluation takes the cases of those patients that were approved when it was locked
(``case_ids``). A set is never edited: it is retired and a new one locked, under the learning
policy (``active -> retired``). A retired set's patients go back to training only when the policy
released them (``released``); until then the builder keeps leaving them out.
"""

from __future__ import annotations

from typing import Any, ClassVar

from django.db import models, transaction
from django.db.models import Q
from django.utils import timezone

from learning_engine.transitions import check_allowed, claim


class LockedEvaluationSet(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        RETIRED = "retired", "Retired"

    TRANSITIONS: ClassVar[dict[str, frozenset[str]]] = {Status.RETIRED: frozenset({Status.ACTIVE})}

    model_type = models.ForeignKey("training.ModelType", on_delete=models.PROTECT, related_name="locked_sets")
    cohort = models.CharField(max_length=100, editable=False, help_text="The model type's cohort when locked.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE, editable=False)
    case_ids = models.JSONField(default=list, editable=False, help_text="The evaluation cases, in id order.")
    case_count = models.PositiveIntegerField(default=0, editable=False)
    patient_count = models.PositiveIntegerField(default=0, editable=False)
    label_counts = models.JSONField(default=dict, editable=False)
    seed = models.IntegerField(default=0, editable=False)
    reason = models.TextField(blank=True, editable=False, help_text="Why it was locked (the policy version).")
    created_by = models.ForeignKey(
        "auth.User", on_delete=models.PROTECT, null=True, blank=True, related_name="+", editable=False
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False, db_index=True)
    retired_at = models.DateTimeField(null=True, blank=True, editable=False)
    released = models.BooleanField(
        default=False,
        editable=False,
        help_text="Retired and released to training by the policy: its patients may train again.",
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "locked evaluation set"
        constraints = [
            models.UniqueConstraint(
                fields=["model_type"], condition=Q(status="active"), name="one_active_locked_set_per_model_type"
            ),
        ]

    def __str__(self) -> str:
        return f"Locked set {self.pk} of {self.model_type_id} ({self.case_count} cases, {self.status})"

    def retire(self, *, reason: str, release: bool = True) -> None:
        """active -> retired; with ``release`` its patients may train again, without it they stay
        out of every training set (the learning policy decides)."""
        check_allowed(self.TRANSITIONS, current=self.status, target=self.Status.RETIRED, label=str(self))
        kept = "released to training" if release else "kept out of training"
        with transaction.atomic():
            claim(
                self,
                expected={"status": self.Status.ACTIVE},
                status=self.Status.RETIRED,
                retired_at=timezone.now(),
                released=release,
                reason=f"{self.reason}\nRetired ({kept}): {reason}".strip(),
            )


class LockedPatient(models.Model):
    """One patient of a locked set, by pseudonym: what the dataset builder excludes."""

    locked_set = models.ForeignKey(LockedEvaluationSet, on_delete=models.CASCADE, related_name="patients")
    pseudonym = models.CharField(max_length=64, db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["locked_set", "pseudonym"], name="locked_patient_once_per_set"),
        ]

    def __str__(self) -> str:
        return f"Locked patient of set {self.locked_set_id}"


def locked_pseudonyms(cohort: str) -> Any:
    """The pseudonyms of every patient in an active locked set of ``cohort``, or in a retired one the
    policy did not release to training (a subquery)."""
    return LockedPatient.objects.filter(
        Q(locked_set__status=LockedEvaluationSet.Status.ACTIVE) | Q(locked_set__released=False),
        locked_set__cohort=cohort,
    ).values("pseudonym")
