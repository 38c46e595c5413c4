"""Dataset snapshots: frozen, patient-disjoint splits of approved, de-identified cases.

``building -> ready | failed``. A ready snapshot is immutable: its manifest (case ids per split),
label counts, content hash and file never change; ``save`` refuses to alter them.
The builder is ``training.datasets.build_snapshot``.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any, ClassVar

from django.conf import settings
from django.db import models, transaction
from django.db.models.fields.json import KT
from django.utils import timezone

from learning_engine.audit import AuditEntry
from learning_engine.exceptions import DomainError, InvalidRequest, TransitionError
from learning_engine.permissions import can_view_phi
from learning_engine.transitions import check_allowed, claim
from training.models.model_type import ModelType

if TYPE_CHECKING:
    from learning_engine.actors import SystemActor

SPLITS = ("train", "validation", "test")


class ImmutableSnapshot(DomainError):
    code = "snapshot_immutable"


class BuildAbandoned(DomainError):
    """The snapshot being built was failed meanwhile (by the reaper): the build must stop."""

    code = "dataset_build_abandoned"


# --- The encounter date range ---------------------------------------------------------------------
# Under Safe Harbor a date finer than the year is an identifier: a day-wide range, and the
# snapshot's manifest or a failed build's message ("the range has 1 case"), would tell which cases
# were seen that day. So without the PHI permission a range covers whole years. The one rule for
# every way of creating a snapshot (API, admin, ``prepare_dataset``): ``create_snapshot`` enforces
# it, and the serializer and the admin form ask it first so the error stands beside its field.
# The case list refuses exact date filters to these users for the same reason (``cases.filters``).

WHOLE_YEARS_MESSAGE = "Without the PHI permission a date range covers whole years: {}."


def date_range_errors(after: dt.date | None, before: dt.date | None, *, by: SystemActor) -> dict[str, list[str]]:
    """What is wrong with an encounter date range asked for by ``by``, per field (empty: nothing).

    ``by`` is the user the snapshot is created for; ``None`` (a command run without an author)
    counts as a user without the PHI permission.
    """
    errors: dict[str, list[str]] = {}
    if after and before and after > before:
        errors["encounter_before"] = ["The date range ends before it starts."]
    if not can_view_phi(by):
        if after and (after.month, after.day) != (1, 1):
            errors.setdefault("encounter_after", []).append(WHOLE_YEARS_MESSAGE.format("a 1 January"))
        if before and (before.month, before.day) != (12, 31):
            errors.setdefault("encounter_before", []).append(WHOLE_YEARS_MESSAGE.format("a 31 December"))
    return errors


def check_date_range(after: dt.date | None, before: dt.date | None, *, by: SystemActor) -> None:
    """Raise ``InvalidRequest`` (400) with the field errors of ``date_range_errors``, if any."""
    errors = date_range_errors(after, before, by=by)
    if not errors:
        return
    reversed_range = bool(after and before and after > before)
    raise InvalidRequest(
        "The encounter date range ends before it starts."
        if reversed_range
        else WHOLE_YEARS_MESSAGE.format("1 January to 31 December"),
        code="invalid_date_range" if reversed_range else "date_range_too_fine",
        errors=errors,
    )


def visible_to(queryset: models.QuerySet[DatasetSnapshot], user: Any) -> models.QuerySet[DatasetSnapshot]:
    """The snapshots of ``queryset`` that ``user`` may see at all.

    A snapshot over a range finer than whole years (made by someone with the PHI permission) is
    not shown to anyone without it: its manifest and file would tell them which cases were seen
    within that range, the very thing the rule above keeps from them.
    """
    if can_view_phi(user):
        return queryset

    def no_date_or(key: str, suffix: str) -> models.Q:
        # A missing key, a JSON null (``key=None`` means that on every database), or whole years.
        return (
            models.Q(**{f"filters__{key}__isnull": True})
            | models.Q(**{f"filters__{key}": None})
            | models.Q(**{f"range_{key}__endswith": suffix})
        )

    return queryset.alias(
        range_encounter_after=KT("filters__encounter_after"), range_encounter_before=KT("filters__encounter_before")
    ).filter(no_date_or("encounter_after", "-01-01") & no_date_or("encounter_before", "-12-31"))


def built_on_visible[Q: models.QuerySet[Any]](queryset: Q, user: Any, field: str = "dataset") -> Q:
    """The rows of ``queryset`` (training jobs, model versions, performance records) whose snapshot
    ``field`` (a lookup path) ``user`` may see (``visible_to``), or that have none.

    A job or a version built on a snapshot hidden from the user shows that snapshot's counts (the
    case count, the test set's size and per-class counts), so it is hidden from the user too.
    """
    if can_view_phi(user):
        return queryset
    visible = visible_to(DatasetSnapshot.objects.all(), user).values("pk")
    return queryset.filter(models.Q(**{f"{field}__isnull": True}) | models.Q(**{f"{field}__in": visible}))


def is_whole_years(filters: dict[str, Any]) -> bool:
    """Whether a snapshot's stored filters select whole years (or no dates at all)."""
    after, before = filters.get("encounter_after"), filters.get("encounter_before")
    return (not after or str(after)[5:] == "01-01") and (not before or str(before)[5:] == "12-31")


class DatasetSnapshot(models.Model):
    class Status(models.TextChoices):
        BUILDING = "building", "Building"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"

    TRANSITIONS: ClassVar[dict[str, frozenset[str]]] = {
        Status.READY: frozenset({Status.BUILDING}),
        Status.FAILED: frozenset({Status.BUILDING}),
    }
    FROZEN_FIELDS: ClassVar[tuple[str, ...]] = (
        "manifest",
        "label_counts",
        "content_hash",
        "file",
        "file_sha256",
        "policy_version",
        "seed",
        "filters",
        "dictionary_id",
    )

    model_type = models.ForeignKey(ModelType, on_delete=models.PROTECT, related_name="datasets")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.BUILDING, editable=False)
    filters = models.JSONField(default=dict, help_text="min_quality, encounter date range, cohort.")
    seed = models.IntegerField(default=0)
    validation_fraction = models.FloatField(default=0.15)
    test_fraction = models.FloatField(default=0.2)

    manifest = models.JSONField(default=dict, editable=False, help_text="Case ids per split.")
    label_counts = models.JSONField(default=dict, editable=False, help_text="{split: {label: count}}")
    case_count = models.PositiveIntegerField(default=0, editable=False)
    patient_count = models.PositiveIntegerField(default=0, editable=False)
    policy_version = models.CharField(max_length=32, blank=True, editable=False)
    content_hash = models.CharField(max_length=64, blank=True, editable=False, db_index=True)
    file = models.FileField(upload_to="datasets/", blank=True, editable=False)
    file_sha256 = models.CharField(max_length=64, blank=True, editable=False)
    file_size = models.PositiveBigIntegerField(default=0, editable=False)
    scan_report = models.JSONField(default=dict, editable=False, help_text="Residual-identifier scan result.")
    error = models.TextField(blank=True, editable=False)
    # The cohort's data dictionary version the build read its cases under (its current published
    # version when the build started): what models trained on the snapshot are checked against.
    # A snapshot is of one cohort (``filters["cohort"]``), so one version. Null: the cohort had no
    # published dictionary, or a snapshot built before dictionaries whose cases were not all checked
    # against one version (migration 0006).
    dictionary = models.ForeignKey(
        "cases.DataDictionary",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        editable=False,
        related_name="dataset_snapshots",
        help_text="The cohort's data dictionary version when the build read its cases. Empty: the cohort had "
        "none published, or the snapshot was built before dictionaries and its cases were not all checked "
        "against one version.",
    )

    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", null=True, blank=True, editable=False
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Set when a build starts and moved as it goes (``heartbeat``): the reaper fails a building snapshot
    # whose heartbeat stopped (its worker died), so none stays "building" forever.
    heartbeat_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Where a build is (written with the heartbeat, ``heartbeat``): what the admin page shows live.
    stage = models.CharField(max_length=64, blank=True, editable=False)
    stage_done = models.PositiveBigIntegerField(default=0, editable=False)
    stage_total = models.PositiveBigIntegerField(default=0, editable=False, help_text="0: not known yet.")

    class Meta:
        ordering = ["-created_at", "-id"]
        permissions = [("download_datasetsnapshot", "Can download dataset files")]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(test_fraction__gt=0.0)
                & models.Q(validation_fraction__gte=0.0)
                & models.Q(test_fraction__lt=1.0),
                name="dataset_fractions_in_range",
            ),
        ]

    def __str__(self) -> str:
        return f"Dataset {self.pk} ({self.status})"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding and self.pk:
            stored = type(self).objects.filter(pk=self.pk).values("status", *self.FROZEN_FIELDS).first()
            if stored and stored["status"] == self.Status.READY:
                changed = [name for name in self.FROZEN_FIELDS if _field_value(self, name) != stored[name]]
                if changed:
                    raise ImmutableSnapshot(f"Dataset {self.pk} is ready; {', '.join(changed)} cannot change.")
        super().save(*args, **kwargs)

    def split_ids(self, split: str) -> list[int]:
        return list(self.manifest.get(split, []))

    def case_ids(self) -> list[int]:
        """Every case in the snapshot, all splits (loads the manifest if it was deferred)."""
        return [int(pk) for ids in (self.manifest or {}).values() if isinstance(ids, list) for pk in ids]

    def heartbeat(self, stage: str | None = None, done: int = 0, total: int = 0) -> None:
        """The build is alive: move the heartbeat (and, given a ``stage``, record where it is: ``done``
        of ``total``, 0 when not known). Raises ``BuildAbandoned`` if it is no longer building.

        A conditional UPDATE: once the reaper has failed the snapshot, the worker that was only
        slow learns it here and stops (as a reaped job's worker does on its next write).
        """
        now = timezone.now()
        values: dict[str, Any] = {"heartbeat_at": now}
        if stage is not None:
            values |= {"stage": stage[:64], "stage_done": max(done, 0), "stage_total": max(total, 0)}
        if not type(self).objects.filter(pk=self.pk, status=self.Status.BUILDING).update(**values):
            raise BuildAbandoned(f"Dataset {self.pk} is no longer building (failed by the reaper?); build stopped.")
        for name, value in values.items():
            setattr(self, name, value)

    def reap(self, *, stale_before: Any, reason: str) -> None:
        """building -> failed for a build whose heartbeat (or, never started, creation) is older than
        ``stale_before``. Raises ``TransitionError`` if it moved in the meantime."""
        check_allowed(self.TRANSITIONS, current=self.status, target=self.Status.FAILED, label=f"Dataset {self.pk}")
        stale = models.Q(heartbeat_at__lt=stale_before) | models.Q(
            heartbeat_at__isnull=True, created_at__lt=stale_before
        )
        with transaction.atomic():
            updated = (
                type(self)
                .objects.filter(stale, pk=self.pk, status=self.Status.BUILDING)
                .update(status=self.Status.FAILED, finished_at=timezone.now(), error=reason)
            )
            if updated != 1:
                raise TransitionError(f"Dataset {self.pk} moved since it was read; not reaped.")
            self.status, self.error = self.Status.FAILED, reason
            DatasetTransition.objects.create(
                dataset=self, actor=None, from_state=self.Status.BUILDING, to_state=self.Status.FAILED, reason=reason
            )

    def complete(self, **results: Any) -> None:
        """building -> ready, storing the build's results in the same UPDATE."""
        check_allowed(self.TRANSITIONS, current=self.status, target=self.Status.READY, label=f"Dataset {self.pk}")
        with transaction.atomic():
            claim(
                self,
                expected={"status": self.Status.BUILDING},
                status=self.Status.READY,
                finished_at=timezone.now(),
                **results,
            )
            DatasetTransition.objects.create(
                dataset=self, actor=None, from_state=self.Status.BUILDING, to_state=self.Status.READY
            )

    def fail(self, *, reason: str, scan_report: dict[str, Any] | None = None) -> None:
        """building -> failed, with the reason, stored as the snapshot's ``error`` (never an
        identifier: callers pass kinds and ids)."""
        check_allowed(self.TRANSITIONS, current=self.status, target=self.Status.FAILED, label=f"Dataset {self.pk}")
        with transaction.atomic():
            claim(
                self,
                expected={"status": self.Status.BUILDING},
                status=self.Status.FAILED,
                finished_at=timezone.now(),
                error=reason,
                scan_report=scan_report or {},
            )
            DatasetTransition.objects.create(
                dataset=self, actor=None, from_state=self.Status.BUILDING, to_state=self.Status.FAILED, reason=reason
            )


def _field_value(instance: models.Model, name: str) -> Any:
    value = getattr(instance, name)
    return value.name if hasattr(value, "name") and name == "file" else value


class DatasetTransition(AuditEntry):
    dataset = models.ForeignKey(DatasetSnapshot, on_delete=models.PROTECT, related_name="transitions")

    class Meta(AuditEntry.Meta):
        verbose_name = "dataset transition"
