"""A/B tests: a candidate version (B) against the production version (A) on live predictions.

States: ``running -> concluded | stopped`` (``ABTest.TRANSITIONS``). At most one running test per
model type, held by a conditional unique constraint, so two concurrent starts cannot both win.

- ``ABTest.start`` checks the set-up (both versions of the model type, approved, not archived,
  different; the split in 0..1) and creates the running test with its first audit row.
- ``stop`` ends a test at any time with a reason; nothing is promoted.
- ``conclude`` ends it with the decision of ``models_registry.experiments.stats.evaluate`` on the figures
  of that moment, recorded on the row with the whole evaluation. A decision ``ship_b`` promotes B
  through ``ModelVersion.activate`` (its audit row and an activation history row whose reason
  names the test); any other decision keeps A. The periodic task concludes tests past their
  duration with ``promote=False``: who serves patients is decided by a person.

Every start and end bumps the serving generation on commit, so every process's router picks the
test's arms up (or drops them) on its next request, as it does for an activation.

Concurrency policy: ending a test claims the row with a conditional UPDATE on its status (a stale
copy, or a second concurrent stop, fails with 409). A conclusion that promotes locks the model
type row first (``select_for_update``), the same first lock as an activation, so the two queue
behind each other and cannot deadlock.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING, Any, ClassVar

from django.conf import settings
from django.db import IntegrityError, models, transaction
from django.db.models import Q
from django.dispatch import Signal
from django.utils import timezone

from alerts.events import EventType, emit
from learning_engine.audit import AuditEntry
from learning_engine.exceptions import DomainError, InvalidRequest, TransitionError
from learning_engine.transitions import check_allowed, claim
from models_registry.experiments.stats import Decision
from models_registry.generation import bump_generation
from models_registry.registry.models import ModelVersion

if TYPE_CHECKING:
    from learning_engine.actors import Actor, SystemActor

# Bounds of a test's set-up (the API's serializer and the admin form state them too).
MAX_DURATION_HOURS = 24 * 366
DEFAULT_MIN_LABELLED = 100
DEFAULT_SIGNIFICANCE = 0.05
MAX_SIGNIFICANCE = 0.2
MAX_MIN_LABELLED = 1_000_000

logger = logging.getLogger(__name__)


class ABTestQuerySet(models.QuerySet["ABTest"]):
    def running(self) -> ABTestQuerySet:
        return self.filter(status=ABTest.Status.RUNNING)

    def expired(self, now: dt.datetime | None = None) -> ABTestQuerySet:
        """Running tests whose duration has elapsed."""
        return self.running().filter(ends_at__lte=now or timezone.now())


class ABTest(models.Model):
    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        CONCLUDED = "concluded", "Concluded"
        STOPPED = "stopped", "Stopped"

    class Mode(models.TextChoices):
        SPLIT = "split", "Split (each subject sees one arm)"
        SHADOW = "shadow", "Shadow (A answers; B predicts silently)"

    TRANSITIONS: ClassVar[dict[str, frozenset[str]]] = {
        Status.CONCLUDED: frozenset({Status.RUNNING}),
        Status.STOPPED: frozenset({Status.RUNNING}),
    }

    model_type = models.ForeignKey("training.ModelType", on_delete=models.PROTECT, related_name="ab_tests")
    version_a = models.ForeignKey(
        "models_registry.ModelVersion",
        on_delete=models.PROTECT,
        related_name="+",
        help_text="The production version (normally the active one).",
    )
    version_b = models.ForeignKey(
        "models_registry.ModelVersion", on_delete=models.PROTECT, related_name="+", help_text="The candidate."
    )
    traffic_split = models.FloatField(help_text="Share of subjects sent to B (0 to 1). Shadow mode: not used.")
    duration_hours = models.PositiveIntegerField(help_text="After this many hours the test is concluded.")
    mode = models.CharField(max_length=16, choices=Mode.choices, default=Mode.SPLIT)
    min_labelled_per_arm = models.PositiveIntegerField(
        default=DEFAULT_MIN_LABELLED, help_text="Predictions with feedback per arm before any decision but hold."
    )
    significance_level = models.FloatField(default=DEFAULT_SIGNIFICANCE)

    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.RUNNING, editable=False, db_index=True
    )
    started_at = models.DateTimeField(default=timezone.now, editable=False)
    ends_at = models.DateTimeField(editable=False, help_text="When the duration elapses.")
    ended_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    concluded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        editable=False,
        help_text="Who concluded or stopped the test; empty for the periodic task.",
    )
    reason = models.TextField(blank=True, editable=False, help_text="Why it was concluded or stopped.")
    decision = models.CharField(
        max_length=16, blank=True, editable=False, help_text="The statistical decision when the test ended."
    )
    evaluation = models.JSONField(
        default=dict, blank=True, editable=False, help_text="The figures and evaluation when the test ended."
    )
    promoted = models.BooleanField(default=False, editable=False, help_text="B was activated by the conclusion.")

    objects = ABTestQuerySet.as_manager()

    class Meta:
        ordering = ["-started_at", "-id"]
        verbose_name = "A/B test"
        verbose_name_plural = "A/B tests"
        constraints = [
            models.UniqueConstraint(
                fields=["model_type"], condition=Q(status="running"), name="one_running_ab_test_per_model_type"
            ),
            models.CheckConstraint(
                condition=Q(traffic_split__gte=0.0, traffic_split__lte=1.0), name="ab_test_split_between_0_and_1"
            ),
            models.CheckConstraint(condition=~Q(version_a=models.F("version_b")), name="ab_test_two_versions"),
            models.CheckConstraint(condition=Q(duration_hours__gte=1), name="ab_test_duration_positive"),
            models.CheckConstraint(
                condition=Q(significance_level__gt=0.0, significance_level__lt=1.0),
                name="ab_test_significance_between_0_and_1",
            ),
            models.CheckConstraint(condition=Q(min_labelled_per_arm__gte=1), name="ab_test_min_labelled_positive"),
        ]
        permissions = [
            ("stop_abtest", "Can stop A/B tests"),
            ("conclude_abtest", "Can conclude A/B tests (and promote the winner)"),
        ]

    def __str__(self) -> str:
        return f"A/B test {self.pk}: {self.version_a} vs {self.version_b}"

    # --- Start -----------------------------------------------------------------------------------

    @staticmethod
    def check_setup(
        *,
        model_type: Any,
        version_a: Any,
        version_b: Any,
        traffic_split: float,
        duration_hours: int,
        mode: str,
        min_labelled_per_arm: int,
        significance_level: float,
    ) -> None:
        """Raise ``InvalidRequest`` (400) for a set-up no state could make acceptable."""
        if mode not in ABTest.Mode.values:
            raise InvalidRequest(f"mode must be one of {', '.join(ABTest.Mode.values)}.", code="invalid_mode")
        if not 0.0 <= traffic_split <= 1.0:
            raise InvalidRequest("traffic_split must be between 0 and 1 (B's share).", code="invalid_split")
        if mode == ABTest.Mode.SPLIT and traffic_split in (0.0, 1.0):
            raise InvalidRequest(
                "A split test needs traffic on both arms: traffic_split strictly between 0 and 1.",
                code="invalid_split",
            )
        if not 1 <= duration_hours <= MAX_DURATION_HOURS:
            raise InvalidRequest(f"duration_hours must be 1 to {MAX_DURATION_HOURS}.", code="invalid_duration")
        if min_labelled_per_arm < 1:
            raise InvalidRequest("min_labelled_per_arm must be at least 1.", code="invalid_min_labelled")
        if not 0.0 < significance_level <= MAX_SIGNIFICANCE:
            raise InvalidRequest(
                f"significance_level must be above 0 and at most {MAX_SIGNIFICANCE}.", code="invalid_significance"
            )
        if version_a.pk == version_b.pk:
            raise InvalidRequest(
                f"{version_a.version} against itself: name two different versions.", code="same_version"
            )
        for version in (version_a, version_b):
            if version.model_type_id != model_type.pk:
                raise InvalidRequest(
                    f"{version.version} is not a version of {model_type.slug}.", code="unknown_version"
                )
            if version.approval_status != ModelVersion.Approval.APPROVED:
                raise InvalidRequest(
                    f"{version.version} is {version.approval_status}; only approved versions are tested.",
                    code="not_approved",
                    version=version.version,
                )
            if version.deployment_status == ModelVersion.Deployment.ARCHIVED:
                raise InvalidRequest(
                    f"{version.version} is archived; it is never served again.", code="version_archived"
                )

    @classmethod
    def start(
        cls,
        *,
        model_type: Any,
        version_a: Any,
        version_b: Any,
        traffic_split: float,
        duration_hours: int,
        by: Actor,
        mode: str = Mode.SPLIT,
        min_labelled_per_arm: int = DEFAULT_MIN_LABELLED,
        significance_level: float = DEFAULT_SIGNIFICANCE,
    ) -> ABTest:
        """Create a running test (-> running). Its arms serve from the next request in every process.

        Raises ``InvalidRequest`` (400) for a bad set-up and ``DomainError`` ``ab_test_running``
        (409) when the model type has a running test already.
        """
        setup = {
            "model_type": model_type,
            "version_a": version_a,
            "version_b": version_b,
            "traffic_split": float(traffic_split),
            "duration_hours": int(duration_hours),
            "mode": str(mode),
            "min_labelled_per_arm": int(min_labelled_per_arm),
            "significance_level": float(significance_level),
        }
        cls.check_setup(**setup)
        from training.models import ModelType

        try:
            with transaction.atomic():
                # The model type's row first, as activation, deactivation and archiving do: a version
                # cannot be archived or deactivated between the check below and the test's start.
                ModelType.objects.select_for_update().get(pk=model_type.pk)
                fresh = {v.pk: v for v in ModelVersion.objects.filter(pk__in=[version_a.pk, version_b.pk])}
                cls.check_setup(**{**setup, "version_a": fresh[version_a.pk], "version_b": fresh[version_b.pk]})
                now = timezone.now()
                test = cls.objects.create(
                    **setup,
                    started_at=now,
                    ends_at=now + dt.timedelta(hours=setup["duration_hours"]),
                    created_by=by,
                )
                test._audit(by=by, source="", target=cls.Status.RUNNING, reason=test.describe())
                transaction.on_commit(_routing_changed)
                # The expiry checks' chain (``models_registry.experiments.tasks``) listens; inside
                # the transaction, as before: its schedule row commits with the test.
                ab_test_started.send(sender=cls, test=test)
        except IntegrityError:
            # The constraint "one running test per model type": another test runs (or was started
            # at the same moment). The check constraints are covered by check_setup above.
            running = cls.objects.running().filter(model_type=model_type).values_list("pk", flat=True).first()
            raise DomainError(
                f"{model_type.slug} already has a running A/B test ({running}); stop or conclude it first.",
                code="ab_test_running",
                ab_test=running,
            ) from None
        return test

    def describe(self) -> str:
        share = f"{self.traffic_split:.0%} to B" if self.mode == self.Mode.SPLIT else "shadow"
        return f"{self.version_a} (A) vs {self.version_b} (B), {share}, {self.duration_hours} h"

    # --- End -------------------------------------------------------------------------------------

    def _audit(self, *, by: SystemActor, source: str, target: str, reason: str = "") -> None:
        ABTestTransition.objects.create(test=self, actor=by, from_state=source, to_state=target, reason=reason)

    def stop(self, *, by: Actor, reason: str = "") -> None:
        """running -> stopped, at any time; nothing is promoted (A keeps serving as before).

        The evaluation of that moment is recorded for the record.
        """
        check_allowed(self.TRANSITIONS, current=self.status, target=self.Status.STOPPED, label=str(self))
        evaluation = self.evaluate()
        with transaction.atomic():
            claim(
                self,
                expected={"status": self.Status.RUNNING},
                status=self.Status.STOPPED,
                ended_at=timezone.now(),
                concluded_by=by,
                reason=reason,
                decision=evaluation["decision"],
                evaluation=evaluation,
            )
            self._audit(by=by, source=self.Status.RUNNING, target=self.Status.STOPPED, reason=reason)
            transaction.on_commit(_routing_changed)

    def conclude(
        self, *, by: SystemActor, reason: str = "", promote: bool = True, expected_decision: str | None = None
    ) -> None:
        """running -> concluded with the decision of this moment; ``ship_b`` promotes B (if ``promote``).

        ``expected_decision``: the decision the person saw when they chose to conclude. If feedback
        arriving since has changed it, nothing happens (409 ``decision_changed``): a promotion is
        never made on figures nobody looked at.

        Promotion is ``version_b.activate`` in the same transaction: its audit row and an
        activation history row whose reason names this test; the previously active version
        becomes inactive. Any other decision (or ``promote=False``, the periodic task) keeps A.
        """
        from training.models import ModelType

        check_allowed(self.TRANSITIONS, current=self.status, target=self.Status.CONCLUDED, label=str(self))
        # Read before the transaction: the figures are aggregate queries that lock nothing.
        evaluation = self.evaluate()
        decision = evaluation["decision"]
        if expected_decision is not None and expected_decision != decision:
            raise DomainError(
                f"The decision is now {decision}, not {expected_decision} as when you looked; review the "
                "figures and conclude again.",
                code="decision_changed",
                decision=decision,
            )
        with transaction.atomic():
            # The activation's own first lock, taken before the test row: see the module docstring.
            ModelType.objects.select_for_update().get(pk=self.model_type_id)
            claim(
                self,
                expected={"status": self.Status.RUNNING},
                status=self.Status.CONCLUDED,
                ended_at=timezone.now(),
                concluded_by=by,
                reason=reason,
                decision=decision,
                evaluation=evaluation,
            )
            promoted = promote and decision == Decision.SHIP_B
            summary = f"Decision {decision}: " + (
                f"{self.version_b} promoted." if promoted else f"{self.version_a} kept."
            )
            self._audit(
                by=by,
                source=self.Status.RUNNING,
                target=self.Status.CONCLUDED,
                reason=f"{summary} {reason}".strip(),
            )
            if promoted:
                self._promote_b(by=by, reason=reason)
            self._alert_decided(decision=decision, promoted=promoted, by=by)
            transaction.on_commit(_routing_changed)

    def _alert_decided(self, *, decision: str, promoted: bool, by: SystemActor) -> None:
        """An ``abtest.decided`` alert, recorded if the conclusion commits."""
        outcome = f"version {self.version_b_id} promoted" if promoted else f"version {self.version_a_id} kept"
        emit(
            EventType.ABTEST_DECIDED,
            model_type=self.model_type,
            summary=f"A/B test {self.pk} concluded with decision {decision}: {outcome}",
            data={
                "ab_test": self.pk,
                "decision": str(decision),
                "promoted": promoted,
                "mode": self.mode,
                "version_a": self.version_a_id,
                "version_b": self.version_b_id,
                "concluded_by": by.pk if by is not None else None,
                "automatic": by is None,
            },
        )

    def _promote_b(self, *, by: SystemActor, reason: str) -> None:
        version_b = ModelVersion.objects.get(pk=self.version_b_id)
        if version_b.deployment_status != ModelVersion.Deployment.ACTIVE:
            label = f"A/B test {self.pk} concluded ship_b: {version_b.version} beat {self.version_a}"
            version_b.activate(by=by, reason=f"{label}. {reason}".strip() if reason else f"{label}.")
        ABTest.objects.filter(pk=self.pk).update(promoted=True)
        self.promoted = True

    @classmethod
    def conclude_expired(cls, *, now: dt.datetime | None = None, dry_run: bool = False) -> dict[str, list[int]]:
        """Conclude every running test past its duration, without promotion (the periodic task).

        A test another process ended meanwhile is skipped. Returns the ids concluded and skipped.
        """
        concluded: list[int] = []
        skipped: list[int] = []
        for test in cls.objects.expired(now).select_related("version_a", "version_b").order_by("pk"):
            if dry_run:
                concluded.append(test.pk)
                continue
            try:
                test.conclude(
                    by=None,
                    reason=f"The duration of {test.duration_hours} h elapsed (concluded automatically, "
                    "without promotion).",
                    promote=False,
                )
            except DomainError:
                skipped.append(test.pk)  # another process ended it meanwhile
            except Exception:
                # One test's failure (a lost connection, a bad row) must not leave the others
                # routing past their end: log it, go on; the next run retries it.
                logger.exception("Could not conclude the expired A/B test %s", test.pk)
                skipped.append(test.pk)
            else:
                concluded.append(test.pk)
        return {"concluded": concluded, "skipped": skipped}

    # --- Figures ---------------------------------------------------------------------------------

    def evaluate(self) -> dict[str, Any]:
        """The live figures and the current decision (``models_registry.experiments.figures``), plain JSON."""
        from models_registry.experiments.figures import live_figures

        return live_figures(self)

    # --- Predicates ------------------------------------------------------------------------------

    def is_running(self) -> bool:
        return self.status == self.Status.RUNNING

    def can_stop(self) -> bool:
        return self.is_running()

    def can_conclude(self) -> bool:
        return self.is_running()


def _routing_changed() -> None:
    bump_generation()


# Sent inside ``ABTest.start``'s transaction. A signal, not an import: the periodic task that
# concludes expired tests sits above the model (it imports it) and connects itself in
# ``ModelsRegistryConfig.ready()``.
ab_test_started = Signal()


def refuse_deployment_change_during_a_test(version: ModelVersion, verb: str) -> None:
    """The registry's deployment guard for A/B tests, registered in ``ModelsRegistryConfig.ready()``
    (``models_registry.registry.models.register_deployment_guard``): 409 when ``verb`` would change
    what a running test serves.

    A version that serves an arm of a running test stays until the test ends (deactivate, archive).
    While a test runs, its arms serve and its conclusion decides what is active next: activating
    another version meanwhile would silently replace A, so that a conclusion that "keeps A" (or a
    stop) would hand every patient to a version nobody chose. The promotion of B runs after the test
    has left ``running``, in the conclusion's own transaction.
    """
    if verb == "activate":
        running = (
            ABTest.objects.running().filter(model_type_id=version.model_type_id).values_list("pk", flat=True).first()
        )
        if running is not None:
            raise TransitionError(
                f"The model type has a running A/B test ({running}); stop or conclude it before you activate "
                f"{version.version}.",
                code="ab_test_running",
            )
        return
    running = (
        ABTest.objects.running()
        .filter(Q(version_a_id=version.pk) | Q(version_b_id=version.pk))
        .values_list("pk", flat=True)
        .first()
    )
    if running is not None:
        raise TransitionError(
            f"{version.version} serves an arm of the running A/B test {running}; stop or conclude the test "
            f"before you {verb} it.",
            code="version_in_ab_test",
        )


class ABTestTransition(AuditEntry):
    """Audit of an A/B test's start and end."""

    test = models.ForeignKey(ABTest, on_delete=models.PROTECT, related_name="transitions")

    class Meta(AuditEntry.Meta):
        verbose_name = "A/B test transition"
