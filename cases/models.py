"""Clinical cases and their review workflow.

Concurrency policy: every transition and every edit claims the row with one conditional UPDATE
on the status *and* the revision it read (``learning_engine.transitions.claim``): ``UPDATE ...
WHERE id = %s AND status = <seen> AND revision = <seen>``, then checks that one row changed.

- It works the same on SQLite and PostgreSQL, needs no row lock and so has no lock order to keep.
- A stale copy cannot overwrite a fresher change: if another request approved, rejected, retracted
  or edited the case since this copy was loaded, the claim matches no row and raises
  ``TransitionError`` (HTTP 409); the first writer's result stands. Reload and retry.
- An approval can never certify content the reviewer did not see: every edit bumps ``revision``,
  so an edit made after the reviewer loaded the case makes the approval fail.
- The audit row is written in the same transaction as the claim, so a transition and its audit
  row commit (or roll back) together; a failed transition writes no audit row.
- Nothing slow happens inside the transaction: de-identification and quality scoring run before
  it, on the copy that the claim then proves current.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any, ClassVar

from django.conf import settings
from django.db import models, transaction
from django.utils import timezone

from cases import quality
from cases.deid.records import deidentify
from cases.deid.safe_harbor import POLICY_VERSION
from cases.derived import approval_columns
from cases.dictionary.models import Cohort, DataDictionary, DictionaryTransition
from cases.interchange import CaseRecord
from learning_engine.audit import AuditEntry
from learning_engine.exceptions import DomainError, FourEyesViolation, TransitionError
from learning_engine.transitions import check_allowed, claim

__all__ = ["Case", "CaseTransition", "Cohort", "DataDictionary", "DictionaryTransition"]

# The columns of a case that hold its clinical content: what an edit may change.
CONTENT_FIELDS = (
    "cohort",
    "patient",
    "encounter_date",
    "findings",
    "symptoms",
    "note",
    "diagnosis_code",
    "diagnosis_label",
    "extra",
)


class CaseQuerySet(models.QuerySet["Case"]):
    def approved(self) -> CaseQuerySet:
        return self.filter(status=Case.Status.APPROVED)

    def for_list(self) -> CaseQuerySet:
        # The dictionary's version number and cohort, not its definition (a list needs no findings).
        return self.select_related("submitted_by", "reviewed_by", "last_edited_by", "dictionary__cohort").defer(
            "dictionary__definition"
        )


class Case(models.Model):
    class Status(models.TextChoices):
        SUBMITTED = "submitted", "Submitted"
        APPROVED = "approved", "Approved"
        REJECTED = "rejected", "Rejected"
        RETRACTED = "retracted", "Retracted"

    class RejectionReason(models.TextChoices):
        INCOMPLETE = "incomplete", "Incomplete record"
        IMPLAUSIBLE = "implausible", "Implausible values"
        WRONG_LABEL = "wrong_label", "Diagnosis not supported"
        DUPLICATE = "duplicate", "Duplicate of another case"
        OTHER = "other", "Other"

    # Allowed source states per target state: the one table of the review workflow.
    TRANSITIONS: ClassVar[dict[str, frozenset[str]]] = {
        Status.APPROVED: frozenset({Status.SUBMITTED}),
        Status.REJECTED: frozenset({Status.SUBMITTED}),
        Status.SUBMITTED: frozenset({Status.REJECTED}),  # by an edit (``revise``)
        Status.RETRACTED: frozenset({Status.APPROVED}),
    }
    EDITABLE: ClassVar[frozenset[str]] = frozenset({Status.SUBMITTED, Status.REJECTED})

    source = models.CharField(max_length=100, help_text="The submitting system or site.")
    external_id = models.CharField(max_length=200, help_text="Unique per source.")
    cohort = models.CharField(max_length=100, db_index=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.SUBMITTED, editable=False)

    # Raw clinical content. ``patient`` and ``note`` are PHI: shown only with cases.view_phi.
    patient = models.JSONField(default=dict)
    encounter_date = models.DateField()
    findings = models.JSONField(default=dict)
    symptoms = models.JSONField(default=list)
    note = models.TextField(blank=True)
    diagnosis_code = models.CharField(max_length=20, blank=True, db_index=True)
    diagnosis_label = models.CharField(max_length=255, blank=True)
    extra = models.JSONField(default=dict, blank=True, help_text="Unknown keys of the imported record.")
    record_hash = models.CharField(max_length=64, editable=False)
    revision = models.PositiveIntegerField(default=1, editable=False)

    submitted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="submitted_cases", editable=False
    )
    last_edited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="edited_cases",
        editable=False,
    )
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="reviewed_cases",
        editable=False,
    )
    reviewed_at = models.DateTimeField(null=True, blank=True, editable=False)
    review_note = models.TextField(blank=True, editable=False)
    rejection_reason = models.CharField(max_length=16, choices=RejectionReason.choices, blank=True, editable=False)

    # The dictionary version the record was checked against when it came in (issue 11): set by the
    # API, the import and feedback. ``dictionary_errors`` lists what a later check found wrong with
    # a case that was already on file (the data migration): such cases are flagged for review,
    # never dropped. Issues name positions and fields, never values: no PHI.
    dictionary = models.ForeignKey(
        "cases.DataDictionary", on_delete=models.PROTECT, null=True, blank=True, related_name="cases", editable=False
    )
    dictionary_errors = models.JSONField(default=list, blank=True, editable=False)

    quality_score = models.FloatField(default=0.0, editable=False, db_index=True)
    quality_issues = models.JSONField(default=list, editable=False)

    deidentified = models.JSONField(null=True, blank=True, editable=False)
    deid_policy_version = models.CharField(max_length=32, blank=True, editable=False)
    patient_pseudonym = models.CharField(max_length=64, blank=True, db_index=True, editable=False)
    # Written with ``deidentified`` in the approval's UPDATE (``cases.derived.approval_columns``), never
    # changed after: an approved case's content is frozen. Dataset builds stream these instead of
    # recomputing them per case. ``residual_keys`` are folded identifiers (PHI, like ``patient``):
    # read only by the residual scan in ``cases.scanning``.
    deid_sha256 = models.CharField(max_length=64, blank=True, editable=False)
    deid_dataset_row = models.TextField(blank=True, editable=False)
    residual_keys = models.TextField(blank=True, editable=False)

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = CaseQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["source", "external_id"], name="case_unique_source_external_id"),
            models.CheckConstraint(
                condition=models.Q(quality_score__gte=0.0) & models.Q(quality_score__lte=1.0),
                name="case_quality_score_0_1",
            ),
            models.CheckConstraint(
                condition=models.Q(status__in=["submitted", "approved", "rejected", "retracted"]),
                name="case_status_valid",
            ),
        ]
        indexes = [models.Index(fields=["status", "cohort"], name="case_status_cohort")]
        permissions = [
            ("view_phi", "Can view patient identifiers and raw notes"),
            ("review_case", "Can approve, reject and retract cases"),
            ("import_cases", "Can bulk-import cases"),
            ("view_case_statistics", "Can view case statistics"),
        ]

    def __str__(self) -> str:
        return f"Case {self.pk} ({self.source}/{self.cohort}, {self.status})"

    # --- Building --------------------------------------------------------------------------------

    @staticmethod
    def content_from_record(record: CaseRecord, *, dictionary: DataDictionary | None = None) -> dict[str, Any]:
        """The column values of a validated record, quality score included. With the dictionary
        version it was checked against, its expected ranges are what "implausible" means."""
        score, issues = quality.assess(record, ranges=dictionary.expected_ranges() if dictionary else None)
        content: dict[str, Any] = {"dictionary": dictionary, "dictionary_errors": []} if dictionary else {}
        return content | {
            "cohort": record.cohort,
            "patient": record.patient,
            "encounter_date": record.encounter_date,
            "findings": record.findings,
            "symptoms": record.symptoms,
            "note": record.note,
            "diagnosis_code": record.diagnosis_code,
            "diagnosis_label": record.diagnosis_label,
            "extra": record.extra,
            "record_hash": record.content_hash(),
            "quality_score": score,
            "quality_issues": issues,
        }

    @classmethod
    def build(cls, record: CaseRecord, *, by: Actor, dictionary: DataDictionary | None = None) -> Case:
        """An unsaved submitted case (for ``bulk_create``); ``submit`` saves one with its audit row."""
        return cls(
            source=record.source,
            external_id=record.external_id,
            submitted_by=by,
            **cls.content_from_record(record, dictionary=dictionary),
        )

    @classmethod
    def submit(cls, record: CaseRecord, *, by: Actor, dictionary: DataDictionary | None = None) -> Case:
        """Create a case: -> submitted. Writes the audit row. ``dictionary``: the version the
        record was checked against (``cases.dictionary.checking.check_record``)."""
        with transaction.atomic():
            case = cls.build(record, by=by, dictionary=dictionary)
            case.save()
            CaseTransition.objects.create(case=case, actor=by, from_state="", to_state=cls.Status.SUBMITTED)
        return case

    def to_record(self) -> CaseRecord:
        return CaseRecord(
            source=self.source,
            external_id=self.external_id,
            cohort=self.cohort,
            patient=dict(self.patient),
            encounter_date=self.encounter_date
            if isinstance(self.encounter_date, dt.date)
            else dt.date.fromisoformat(str(self.encounter_date)),
            findings=dict(self.findings),
            symptoms=list(self.symptoms),
            note=self.note,
            diagnosis_code=self.diagnosis_code,
            diagnosis_label=self.diagnosis_label,
            extra=dict(self.extra),
        )

    # --- Predicates ------------------------------------------------------------------------------

    def can_edit(self) -> bool:
        return self.status in self.EDITABLE

    def can_review(self, user: Any) -> bool:
        return self.status == self.Status.SUBMITTED and not self._is_author(user)

    def _is_author(self, user: Any) -> bool:
        return user is not None and user.pk in {self.submitted_by_id, self.last_edited_by_id}

    # --- Transitions -----------------------------------------------------------------------------

    def _check(self, target: str) -> None:
        check_allowed(self.TRANSITIONS, current=self.status, target=target, label=f"Case {self.pk}")

    def _check_reviewer(self, by: Actor) -> None:
        if by is None:
            raise FourEyesViolation(f"Case {self.pk} needs a named reviewer.", code="reviewer_required")
        if self._is_author(by):
            raise FourEyesViolation(
                f"Case {self.pk} was submitted or last edited by {by}; another clinician must review it.",
            )

    def _audit(self, *, by: Actor, source: str, reason: str = "") -> None:
        CaseTransition.objects.create(case=self, actor=by, from_state=source, to_state=self.status, reason=reason)

    def approve(self, *, by: Actor, note: str = "") -> None:
        """submitted -> approved. Stores the de-identified record and the patient pseudonym.

        The reviewer must be neither the submitter nor the last editor (four-eyes rule). The claim
        includes the revision, so an edit made after the reviewer loaded the case fails this.
        """
        self._check(self.Status.APPROVED)
        self._check_reviewer(by)
        record = self.to_record()
        deidentified = deidentify(record, key=settings.PSEUDONYM_KEY)
        derived = approval_columns(record.patient, deidentified)  # slow work before the transaction
        source = self.status
        with transaction.atomic():
            self._claim(
                source,
                status=self.Status.APPROVED,
                reviewed_by=by,
                reviewed_at=timezone.now(),
                review_note=note,
                rejection_reason="",
                deidentified=deidentified,
                deid_policy_version=POLICY_VERSION,
                patient_pseudonym=deidentified["patient_pseudonym"],
                **derived,
            )
            self._audit(by=by, source=source, reason=note)

    def reject(self, *, by: Actor, reason: str, note: str = "") -> None:
        """submitted -> rejected, with a reason code (for statistics) and a note to the submitter."""
        if reason not in self.RejectionReason.values:
            raise DomainError(f"Unknown rejection reason {reason!r}.", code="invalid_reason")
        self._check(self.Status.REJECTED)
        self._check_reviewer(by)
        source = self.status
        with transaction.atomic():
            self._claim(
                source,
                status=self.Status.REJECTED,
                reviewed_by=by,
                reviewed_at=timezone.now(),
                review_note=note,
                rejection_reason=reason,
            )
            self._audit(by=by, source=source, reason=f"{reason}: {note}" if note else reason)

    def retract(self, *, by: Actor, reason: str) -> None:
        """approved -> retracted: the case leaves future datasets. Snapshots already built keep it."""
        if not isinstance(reason, str) or not reason.strip():
            raise DomainError("Retracting a case needs a reason.", code="reason_required")
        self._check(self.Status.RETRACTED)
        source = self.status
        with transaction.atomic():
            self._claim(source, status=self.Status.RETRACTED)
            self._audit(by=by, source=source, reason=reason)

    def revise(
        self, record: CaseRecord, *, by: Actor, reason: str = "", dictionary: DataDictionary | None = None
    ) -> tuple[str, ...]:
        """Replace the clinical content. Allowed while submitted or rejected.

        submitted -> submitted or rejected -> submitted (the edit sends a rejected case back for
        review). Every edit writes an audit row naming the content fields it changed (never their
        values). Returns those field names; an empty tuple, with nothing written, when the content
        is unchanged. The quality score is recomputed.
        """
        if (record.source, record.external_id) != (self.source, self.external_id):
            raise DomainError("The source and external id of a case cannot change.", code="immutable_field")
        if not self.can_edit():
            raise TransitionError(
                f"Case {self.pk} is {self.status}; only submitted or rejected cases can be edited.",
                current_status=self.status,
            )
        content = self.content_from_record(record, dictionary=dictionary)
        if content["record_hash"] == self.record_hash:
            return ()
        changed = self.changed_fields(content)
        source = self.status
        target = self.Status.SUBMITTED
        changes: dict[str, Any] = {
            **content,
            "status": target,
            "revision": self.revision + 1,
            "last_edited_by": by,
        }
        if source == self.Status.REJECTED:
            changes.update(reviewed_by=None, reviewed_at=None, rejection_reason="")
        default_reason = "Edited and resubmitted." if source != target else "Edited."
        with transaction.atomic():
            self._claim(source, **changes)
            CaseTransition.objects.create(
                case=self,
                actor=by,
                from_state=source,
                to_state=target,
                reason=reason or default_reason,
                changed_fields=list(changed),
            )
        return changed

    def changed_fields(self, content: dict[str, Any]) -> tuple[str, ...]:
        """The names of the content fields whose values ``content`` changes (in ``CONTENT_FIELDS`` order)."""

        def comparable(name: str, value: Any) -> Any:
            if name == "encounter_date" and value is not None:
                return str(value)[:10]  # a date or its ISO string, as loaded
            return value

        changed = tuple(
            name for name in CONTENT_FIELDS if comparable(name, content[name]) != comparable(name, getattr(self, name))
        )
        # The hash covers exactly these fields; if a representation difference hid the change,
        # say the record changed rather than nothing.
        return changed or ("record",)

    def _claim(self, source: str, **changes: Any) -> None:
        # A conditional UPDATE skips auto_now, so the modification time is set here.
        claim(self, expected={"status": source, "revision": self.revision}, updated_at=timezone.now(), **changes)


# The states in which a case has a de-identified record: all that users without the PHI
# permission see of cases (lists, pages, the statistics' finding summaries).
DEIDENTIFIED_STATES = (Case.Status.APPROVED, Case.Status.RETRACTED)


class CaseTransition(AuditEntry):
    """Audit trail of a case: one row per status change and per edit (``from_state`` may equal
    ``to_state``: an edit of a submitted case), with the names of the fields an edit changed.
    """

    case = models.ForeignKey(Case, on_delete=models.PROTECT, related_name="transitions")
    changed_fields = models.JSONField(
        default=list, blank=True, help_text="The content fields an edit changed (names only, never values)."
    )

    class Meta(AuditEntry.Meta):
        verbose_name = "case transition"


# The PHI access log is part of this app (it points at cases); its models live in their own module.
from cases.access_log import AccessedCase, AccessLogEntry  # noqa: E402

if TYPE_CHECKING:
    from learning_engine.actors import Actor

__all__ = ["CONTENT_FIELDS", "AccessLogEntry", "AccessedCase", "Case", "CaseQuerySet", "CaseTransition"]
