"""The prediction log and clinicians' feedback on it: the serving half of the self-learning loop.

What a prediction row holds, and what it never holds
----------------------------------------------------
Each answered prediction is one ``Prediction`` row: the model type, the version that answered, the
A/B arm and test (blank outside a test; in shadow mode B's silent prediction is a row of its
own, ``shadow_of`` the answered one, never returned and never given feedback), the subject key
pseudonymised with the HMAC key
(``models_registry.serving.inputs.subject_pseudonym``: ``cases.deid.safe_harbor.pseudonym`` under the HMAC key),
the sha256 of the de-identified input (canonical JSON of what the model saw), the predicted code,
the class probabilities, the latency and the requester. No raw value of the request is stored:
not the subject key, not the patient block, not the note, not the external id.

Feedback
--------
``Prediction.give_feedback`` records the confirmed diagnosis once: ``Feedback`` is one-to-one with
its prediction, so the database refuses a second one (409 ``feedback_exists``) however two
requests race. In the same transaction it refreshes the version's live performance and, when the
confirmed case came with it, submits that case for review (the feedback giver is the submitter).

The case's source is bound to the giver (``ClientSource``): a user with a bound source submits
cases under it only (another source is 403 ``source_not_allowed``); a user without one may send a
case only if they may add cases anyway (a clinician, who can do the same through the case API),
else 403 ``no_case_source``. A case already on file (same source and external id) is not
submitted again, and the answer is exactly that of a new case: the feedback is recorded either
way, so the endpoint cannot be used to learn which encounter ids exist.

Live performance: one ``PerformanceRecord`` with source ``live`` per version and day, rewritten on
every feedback of that day. Its metrics are recomputed from all the version's feedback rows
(``accuracy`` = correct / predictions with feedback, plus both counts and ``updated_at``), so the
figure is exact and never drifts, and its ``created_at`` moves to the time of the latest feedback:
each record is a snapshot of the cumulative figures at that time. The latest live record is the
current live accuracy (what the comparison and the admin show); the day's records are the history
of it over time, one point a day however many feedbacks arrive. (The feedback rows themselves keep
every individual answer with its time, should a finer curve be needed.)

Concurrency policy: the feedback insert is the claim (one-to-one constraint). The live record is
rewritten under ``select_for_update`` of the version row, so two feedbacks on one version
serialise there on PostgreSQL (SQLite's IMMEDIATE transactions serialise every writer anyway) and
neither overwrites the other's count. Nothing else is locked: this never touches the model type
row that activation locks first, so the two cannot deadlock.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import IntegrityError, models, transaction
from django.db.models import Count, Q
from django.utils import timezone

from learning_engine.bulk_insert import insert_rows
from learning_engine.exceptions import DomainError, InvalidRequest

if TYPE_CHECKING:
    from learning_engine.actors import Actor

logger = logging.getLogger(__name__)

PERM_ADD_CASE = "cases.add_case"


class SourceNotAllowed(DomainError):
    """The case names a source its sender may not submit under."""

    code = "source_not_allowed"
    status_code = 403


class ClientSource(models.Model):
    """The one case source a user (a prediction client, a site's system) submits cases under.

    Set by an administrator. Cases sent with feedback by this user take this source; a case naming
    another one is refused, so a client cannot write into another site's records.
    """

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="case_source")
    source = models.CharField(
        max_length=100,
        validators=[RegexValidator(r"^\S+$", "A source has no spaces (as in the case interchange format).")],
        help_text="The case source (site or system) of this user's cases.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "client case source"

    def __str__(self) -> str:
        return f"{self.user} -> {self.source}"


def case_source_for(user: Any) -> str | None:
    """The source ``user`` is bound to, or None."""
    if user is None or not user.is_authenticated:
        return None
    return ClientSource.objects.filter(user_id=user.pk).values_list("source", flat=True).first()


def check_case_source(record: Any, *, by: Actor) -> None:
    """Whether ``by`` may submit ``record`` (a ``CaseRecord``) with feedback: see the module docstring."""
    bound = case_source_for(by)
    if bound is not None:
        if record.source != bound:
            raise SourceNotAllowed(
                f"Your cases are submitted under the source {bound!r}; send that source or none.",
                field="case.source",
            )
        return
    if not by.has_perm(PERM_ADD_CASE):
        raise SourceNotAllowed(
            "This account has no case source; an administrator must bind one before it can send cases.",
            code="no_case_source",
        )


# The columns ``PredictionQuerySet.log`` writes, in the order of its value tuples.
LOG_COLUMNS = (
    "model_type_id",
    "version_id",
    "arm",
    "ab_test_id",
    "shadow_of_id",
    "subject_pseudonym",
    "input_sha256",
    "predicted_code",
    "probabilities",
    "latency_ms",
    "requested_by_id",
    "created_at",
)


class PredictionQuerySet(models.QuerySet["Prediction"]):
    def feedback_allowed_for(self, user: Any, *, any_prediction: bool) -> PredictionQuerySet:
        """The predictions ``user`` may give feedback on: all, or only the ones they requested."""
        # A shadow prediction was never returned to anyone: nobody gives feedback on it.
        answered = self.filter(shadow_of__isnull=True)
        return answered if any_prediction else answered.filter(requested_by=user)

    def log(self, rows: Sequence[tuple[Any, ...]]) -> list[int]:
        """Insert prediction rows (tuples in ``LOG_COLUMNS`` order); returns their ids, in order.

        ``learning_engine.bulk_insert.insert_rows``: no model instance per row (a batch predict is
        mostly that work through ``bulk_create``), one INSERT ... RETURNING per chunk of the
        backend's parameter limit (one for a batch of 1,000 on SQLite and PostgreSQL), a batch
        logged whole or not at all.
        """
        return insert_rows(Prediction, LOG_COLUMNS, rows, using=self.db, returning=True)


class Prediction(models.Model):
    # No single-column indexes on these two: the (model type, time) and (version, time) indexes
    # below lead with them, and every index is paid for on each logged prediction.
    model_type = models.ForeignKey(
        "training.ModelType", on_delete=models.PROTECT, related_name="predictions", db_index=False
    )
    version = models.ForeignKey(
        "models_registry.ModelVersion", on_delete=models.PROTECT, related_name="predictions", db_index=False
    )
    arm = models.CharField(max_length=32, blank=True, help_text="The A/B arm that answered; blank outside a test.")
    ab_test = models.ForeignKey(
        "models_registry.ABTest",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="predictions",
        db_index=False,  # the partial index below serves the test's figures
        help_text="The A/B test that routed this prediction, if any.",
    )
    shadow_of = models.ForeignKey(
        "self",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="shadows",
        db_index=False,
        help_text="Shadow mode: the answered prediction (arm A) that B predicted silently; never returned.",
    )
    subject_pseudonym = models.CharField(
        max_length=64, blank=True, db_index=True, help_text="HMAC-SHA256 of the request's subject key (if any)."
    )
    input_sha256 = models.CharField(max_length=64, help_text="sha256 of the de-identified input (canonical JSON).")
    predicted_code = models.CharField(max_length=20)
    probabilities = models.JSONField(default=dict, help_text="{diagnosis code: probability}")
    latency_ms = models.FloatField(help_text="Time to answer; for a batch, the batch's time divided by its size.")
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="predictions")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    objects = PredictionQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["model_type", "created_at"], name="prediction_type_time"),
            models.Index(fields=["version", "created_at"], name="prediction_version_time"),
            # Only predictions routed by a test pay for this one.
            models.Index(
                fields=["ab_test", "arm", "created_at"],
                name="prediction_ab_test_arm",
                condition=Q(ab_test__isnull=False),
            ),
        ]
        permissions = [
            ("predict", "Can request predictions"),
            ("give_feedback", "Can give feedback on predictions"),
        ]

    def __str__(self) -> str:
        return f"Prediction {self.pk} ({self.predicted_code})"

    def give_feedback(self, *, diagnosis_code: str, by: Actor, case_record: Any = None) -> Feedback:
        """Record the confirmed diagnosis (once), refresh live performance, submit the case if given.

        ``case_record`` is a parsed ``cases.interchange.CaseRecord``; it is submitted as a new case
        for review with ``by`` as the submitter, under the source ``by`` may use
        (``check_case_source``: 403 otherwise, nothing written). A case already on file is left as
        it is and the feedback is recorded all the same: the caller cannot tell the two apart.
        Raises ``DomainError`` (409) ``feedback_exists`` for a second feedback; nothing is written.
        """
        from cases.dictionary.checking import check_diagnosis, check_record

        code = diagnosis_code.strip().upper()
        if not code:
            raise InvalidRequest("diagnosis_code must not be empty.", code="invalid_diagnosis_code")
        if case_record is not None and case_record.diagnosis_code and case_record.diagnosis_code != code:
            raise InvalidRequest(
                "The case's diagnosis code differs from the confirmed diagnosis code.", code="diagnosis_mismatch"
            )
        if case_record is not None:
            check_case_source(case_record, by=by)
        # The cohort's data dictionary: a code outside its code set is 400 ``unknown_diagnosis_code``
        # (it would count as a wrong prediction), and a case goes through the same check as the
        # case API's (400 ``unknown_cohort`` / ``dictionary_violation``).
        check_diagnosis(self.model_type.cohort, code)
        dictionary = check_record(case_record).dictionary if case_record is not None else None
        with transaction.atomic():
            try:
                with transaction.atomic():
                    feedback = Feedback.objects.create(
                        prediction=self, diagnosis_code=code, correct=code == self.predicted_code, given_by=by
                    )
            except IntegrityError:
                raise DomainError(
                    f"Prediction {self.pk} already has feedback; it is given once.", code="feedback_exists"
                ) from None
            if case_record is not None:
                case = _submit_unless_on_file(case_record, by=by, dictionary=dictionary)
                if case is not None:
                    Feedback.objects.filter(pk=feedback.pk).update(case=case)
                    feedback.case = case
                else:
                    # Not an error for the caller (that would tell them the encounter exists); the
                    # log names only the feedback, never the source or external id.
                    logger.info(
                        "Feedback %s came with a case already on file; the case was left as it is.", feedback.pk
                    )
            refresh_live_performance(self.version_id)
        return feedback


def _submit_unless_on_file(record: Any, *, by: Actor, dictionary: Any = None) -> Any:
    """The new case submitted from ``record``, or None when its source and external id are on file."""
    from cases.models import Case

    if Case.objects.filter(source=record.source, external_id=record.external_id).exists():
        return None
    try:
        # A savepoint: a lost race leaves the transaction usable.
        return Case.submit(record, by=by, dictionary=dictionary)
    except IntegrityError:
        if Case.objects.filter(source=record.source, external_id=record.external_id).exists():
            return None  # submitted meanwhile by someone else
        raise


class Feedback(models.Model):
    """A clinician's confirmed diagnosis for one prediction (at most one per prediction)."""

    prediction = models.OneToOneField(Prediction, on_delete=models.PROTECT, related_name="feedback")
    diagnosis_code = models.CharField(max_length=20)
    correct = models.BooleanField(help_text="Whether the prediction was the confirmed diagnosis.")
    given_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    case = models.ForeignKey(
        "cases.Case",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text="The case submitted for review with this feedback, if any.",
    )
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "feedback"

    def __str__(self) -> str:
        return f"Feedback on {self.prediction_id}: {self.diagnosis_code}"


def live_metrics(version_id: int) -> dict[str, Any]:
    """Live accuracy of a version from its feedback: correct / predictions with feedback."""
    counts = Feedback.objects.filter(prediction__version_id=version_id).aggregate(
        with_feedback=Count("id"), correct=Count("id", filter=Q(correct=True))
    )
    total, correct = counts["with_feedback"], counts["correct"]
    return {
        "accuracy": correct / total if total else None,
        "correct": correct,
        "with_feedback": total,
        "updated_at": timezone.now().isoformat(),
    }


def refresh_live_performance(version_id: int) -> Any:
    """Rewrite the version's ``live`` performance record of today (see the module docstring)."""
    from models_registry.registry.models import ModelVersion, PerformanceRecord

    with transaction.atomic():
        # Serialises feedback on one version (PostgreSQL), so the read-count-write is not lost.
        ModelVersion.objects.select_for_update().only("pk").get(pk=version_id)
        metrics = live_metrics(version_id)
        now = timezone.now()
        start_of_day = timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0)
        today = (
            PerformanceRecord.objects.filter(
                version_id=version_id, source=PerformanceRecord.Source.LIVE, created_at__gte=start_of_day
            )
            .order_by("-created_at", "-id")
            .first()
        )
        if today is None:
            return PerformanceRecord.objects.create(
                version_id=version_id,
                source=PerformanceRecord.Source.LIVE,
                metrics=metrics,
                test_set_size=metrics["with_feedback"],
            )
        # created_at moves with the snapshot: the record holds the figures as of now.
        changes = {"metrics": metrics, "test_set_size": metrics["with_feedback"], "created_at": now}
        PerformanceRecord.objects.filter(pk=today.pk).update(**changes)
        for name, value in changes.items():
            setattr(today, name, value)
        return today
