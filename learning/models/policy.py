"""The learning policy of a model type: a change-control plan written before any candidate exists.

A policy is versioned: every edit is a new row (``version`` 1, 2, ...) with its author and reason,
and a stored row never changes (``AppendOnlyModel``), so a learning cycle names the exact version
it ran under and that version is the one on record forever. The current policy of a model type is
its highest version; ``enabled`` off pauses the loop. Only a clinical lead edits one (the
``learning.add_learningpolicy`` permission, ``learning_engine.roles``).

The policy says:

- when a cycle starts (``triggers``): new approved cases since the champion's dataset, the
  champion degraded (monitoring), drift above a threshold on a model input, a schedule; and the
  back-off after a rejected, failed or not promoted candidate cycle (``retry_after_hours``, ``triggers.backoff``);
- how candidates are made (``recipe``): algorithms with hyperparameter grids; the grid point is
  chosen on the validation split, never the test split (``learning.cycles``);
- what a candidate must meet against the champion on the locked evaluation set (the envelope:
  ``learning.envelope``);
- what happens when one does (a shadow or split A/B test, then a proposal to the clinical lead,
  or promotion without a person only when ``auto_promote`` says so);
- the rollback guard: propose rolling back a degraded champion, or perform it;
- when the locked evaluation set is renewed (``learning.locked``): after an age, on confirmed
  drift with a minimum share of post-drift cases, and whether the retired set's patients may train.

``clean`` checks every field with a message beside it; ``validate`` raises the same as a 400 for
code paths that do not go through a form.
"""

from __future__ import annotations

import itertools
import math
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models, transaction

from learning_engine.audit import AppendOnlyModel

if TYPE_CHECKING:
    from learning.envelope import Terms
    from learning_engine.actors import Actor
    from training.models import ModelType

MAX_GRID_POINTS = 12
MAX_DAYS = 36_525  # trigger_every_days, locked_renew_days
SUBGROUP_FIELDS = ("sex", "age_band")
SYMPTOM_SUBGROUP = "symptom:"


class LearningPolicy(AppendOnlyModel):
    class TestMode(models.TextChoices):
        SHADOW = "shadow", "Shadow test (the champion answers; the candidate predicts silently)"
        SPLIT = "split", "Split test (a share of patients meets the candidate)"

    class TestApproval(models.TextChoices):
        POLICY = "policy", "Pre-authorised by this policy (the candidate is approved in the author's name)"
        PERSON = "person", "A clinical lead approves each candidate before its test"

    class RollbackAction(models.TextChoices):
        OFF = "off", "Off"
        PROPOSE = "propose", "Propose rollback to the clinical lead"
        PERFORM = "perform", "Roll back automatically"

    model_type = models.ForeignKey("training.ModelType", on_delete=models.PROTECT, related_name="learning_policies")
    version = models.PositiveIntegerField(editable=False)
    enabled = models.BooleanField(default=True, help_text="Off: no cycle starts (an open cycle still finishes).")
    reason = models.TextField(help_text="Why this version: what changed and on whose decision.")

    # Triggers (any one starts a cycle). Empty: that trigger is off.
    trigger_new_cases = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Start when at least this many approved cases arrived since the champion's dataset.",
    )
    trigger_on_degradation = models.BooleanField(
        default=True, help_text="Start when monitoring finds the champion degraded."
    )
    trigger_drift_psi = models.FloatField(
        null=True,
        blank=True,
        help_text="Start when a model input's drift (PSI) exceeds this (0.25 is a common 'major shift').",
    )
    trigger_every_days = models.PositiveIntegerField(
        null=True, blank=True, help_text="Start when the last cycle began this many days ago (or there was none)."
    )
    retry_after_hours = models.PositiveIntegerField(
        default=24,
        help_text="Back-off: after a candidate cycle ends rejected, failed or not promoted, no trigger opens another "
        "until this many hours passed, or the new-cases threshold of approved cases arrived since that "
        "cycle's dataset, whichever comes first (a new policy version or champion lifts it; the rollback "
        "guard is never held).",
    )

    # Candidate recipe.
    recipe = models.JSONField(
        default=list,
        help_text='[{"algorithm": "logistic_regression", "grid": {"C": [0.1, 1.0]}}, ...]: every combination is '
        f"one training job (at most {MAX_GRID_POINTS}); the best on the validation split is the candidate.",
    )

    # The acceptance envelope.
    min_evaluation_cases = models.PositiveIntegerField(
        default=200, help_text="The locked evaluation set must hold at least this many cases."
    )
    non_inferiority_margin = models.FloatField(
        default=0.02, help_text="Candidate accuracy may be at most this much below the champion's (paired bound)."
    )
    significance_level = models.FloatField(
        default=0.05, help_text="One-sided level of the non-inferiority bound (alpha)."
    )
    subgroup_margin = models.FloatField(
        default=0.05, help_text="No subgroup's accuracy may drop by more than this against the champion."
    )
    min_subgroup_cases = models.PositiveIntegerField(
        default=30, help_text="Subgroups smaller than this on the locked set are reported, not judged."
    )
    subgroups = models.JSONField(
        default=list,
        blank=True,
        help_text='Subgroup fields judged: "sex", "age_band" and "symptom:<key>" for a symptom the dictionary '
        "names. Empty: sex and age band.",
    )
    max_calibration_error = models.FloatField(
        default=0.10, help_text="The candidate's expected calibration error (10 bins) must be at most this."
    )

    # Locked evaluation set.
    locked_fraction = models.FloatField(
        default=0.2, help_text="Share of the eligible patients locked for evaluation when a set is made."
    )
    locked_max_cases = models.PositiveIntegerField(default=2000)
    locked_renew_days = models.PositiveIntegerField(
        null=True, blank=True, help_text="Retire the locked set and lock a new one after this many days. Empty: never."
    )
    locked_renew_on_drift = models.BooleanField(
        default=False,
        help_text="Renew the locked set when a candidate cycle starts on confirmed drift or degradation (monitoring's "
        "figures) and the set was locked before the drift began, so both models are judged on post-drift cases.",
    )
    locked_min_fresh_share = models.FloatField(
        default=0.5,
        help_text="A renewal on drift must take at least this share of its cases from after the drift began, and "
        "at least the envelope's minimum of cases; otherwise it waits and the cycle keeps the current set.",
    )
    locked_release_retired = models.BooleanField(
        default=False,
        help_text="On renewal, release the retired set's patients to training. Off: they stay out of every "
        "training set.",
    )

    # Action when a candidate passes.
    test_mode = models.CharField(max_length=16, choices=TestMode.choices, default=TestMode.SHADOW)
    test_traffic_split = models.FloatField(default=0.1, help_text="Split tests: the candidate's share of patients.")
    test_duration_hours = models.PositiveIntegerField(default=24 * 14)
    test_min_labelled_per_arm = models.PositiveIntegerField(default=100)
    test_approval = models.CharField(max_length=16, choices=TestApproval.choices, default=TestApproval.POLICY)
    auto_promote = models.BooleanField(
        default=False,
        help_text="Promote without a person when the envelope held and the test decided ship_b. Off: propose "
        "the promotion to the clinical lead.",
    )
    rollback_action = models.CharField(max_length=16, choices=RollbackAction.choices, default=RollbackAction.PROPOSE)

    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["model_type", "-version"]
        verbose_name = "learning policy"
        verbose_name_plural = "learning policies"
        constraints = [
            models.UniqueConstraint(fields=["model_type", "version"], name="learning_policy_version_unique"),
            models.CheckConstraint(
                condition=models.Q(non_inferiority_margin__gte=0.0, non_inferiority_margin__lte=0.5),
                name="learning_policy_ni_margin_range",
            ),
            models.CheckConstraint(
                condition=models.Q(significance_level__gt=0.0, significance_level__lte=0.2),
                name="learning_policy_alpha_range",
            ),
            models.CheckConstraint(
                condition=models.Q(locked_fraction__gt=0.0, locked_fraction__lt=1.0),
                name="learning_policy_locked_fraction_range",
            ),
            models.CheckConstraint(
                condition=models.Q(locked_min_fresh_share__gte=0.0, locked_min_fresh_share__lte=1.0),
                name="learning_policy_fresh_share_range",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.model_type} learning policy v{self.version}"

    @classmethod
    def current(cls, model_type: ModelType | int) -> LearningPolicy | None:
        pk = model_type if isinstance(model_type, int) else model_type.pk
        return cls.objects.filter(model_type_id=pk).order_by("-version").first()

    def save_as_next_version(self, *, by: Actor) -> None:
        """Store this (unsaved, or edited copy of a stored) policy as ``model_type``'s next version,
        written by ``by``. Checked with ``full_clean`` first; the model type row is locked so two
        leads saving at once get versions n and n + 1, never the same number."""
        from training.models import ModelType

        self.pk = None
        self._state.adding = True
        self.created_by = by
        with transaction.atomic():
            ModelType.objects.select_for_update().get(pk=self.model_type_id)
            current = type(self).current(self.model_type_id)
            self.version = (current.version + 1) if current else 1
            self.full_clean()
            self.save()

    @property
    def used(self) -> bool:
        """Whether a cycle ran under this version (it is immutable either way; this is for display)."""
        return self.cycles.exists()

    @property
    def judged_subgroups(self) -> list[str]:
        return list(self.subgroups) or list(SUBGROUP_FIELDS)

    def terms(self) -> Terms:
        """The acceptance envelope's terms, as ``learning.envelope.judge`` takes them."""
        from learning.envelope import Terms

        return Terms(
            min_evaluation_cases=self.min_evaluation_cases,
            non_inferiority_margin=self.non_inferiority_margin,
            significance_level=self.significance_level,
            subgroup_margin=self.subgroup_margin,
            min_subgroup_cases=self.min_subgroup_cases,
            max_calibration_error=self.max_calibration_error,
            subgroups=tuple(self.judged_subgroups),
        )

    def grid(self) -> list[tuple[str, dict[str, Any]]]:
        """Every (algorithm, hyperparameters) of the recipe, full hyperparameters, in recipe order."""
        return recipe_points(self.recipe)

    def clean(self) -> None:
        errors: dict[str, list[str]] = {}

        def bad(field: str, message: str) -> None:
            errors.setdefault(field, []).append(message)

        for field, low, high in (
            ("non_inferiority_margin", 0.0, 0.5),
            ("subgroup_margin", 0.0, 0.5),
            ("max_calibration_error", 0.0, 1.0),
        ):
            value = getattr(self, field)
            if value is None or not math.isfinite(value) or not low <= value <= high:
                bad(field, f"Must be between {low:g} and {high:g}.")
        if self.significance_level is None or not 0.0 < self.significance_level <= 0.2:
            bad("significance_level", "Must be above 0 and at most 0.2.")
        if self.locked_fraction is None or not 0.0 < self.locked_fraction < 1.0:
            bad("locked_fraction", "Must be between 0 and 1 (exclusive).")
        share = self.locked_min_fresh_share
        if share is None or not math.isfinite(share) or not 0.0 <= share <= 1.0:
            bad("locked_min_fresh_share", "Must be between 0 and 1.")
        if self.trigger_drift_psi is not None and (
            not math.isfinite(self.trigger_drift_psi) or self.trigger_drift_psi <= 0
        ):
            bad("trigger_drift_psi", "Must be a positive number.")
        if self.trigger_new_cases == 0:
            bad("trigger_new_cases", "Must be at least 1 (leave it empty to turn the trigger off).")
        if self.trigger_every_days == 0:
            bad("trigger_every_days", "Must be at least 1 (leave it empty to turn the trigger off).")
        if self.retry_after_hours is None or not 1 <= self.retry_after_hours <= 24 * 366:
            bad("retry_after_hours", "Must be 1 to 8784 hours.")
        # A day count is a timedelta when read: beyond its range the cycle's step would crash.
        for field in ("trigger_every_days", "locked_renew_days"):
            days = getattr(self, field)
            if days is not None and days > MAX_DAYS:
                bad(field, f"Must be at most {MAX_DAYS:,} days (100 years; leave it empty for never).")
        if self.min_evaluation_cases < 1:
            bad("min_evaluation_cases", "Must be at least 1.")
        if self.test_mode == self.TestMode.SPLIT and not 0.0 < self.test_traffic_split < 1.0:
            bad("test_traffic_split", "A split test needs a share strictly between 0 and 1.")
        if not 1 <= self.test_duration_hours <= 24 * 366:
            bad("test_duration_hours", "Must be 1 to 8784 hours.")
        if self.test_min_labelled_per_arm < 1:
            bad("test_min_labelled_per_arm", "Must be at least 1.")
        try:
            recipe_points(self.recipe)
        except ValidationError as exc:
            bad("recipe", " ".join(exc.messages))
        try:
            self._check_subgroups()
        except ValidationError as exc:
            bad("subgroups", " ".join(exc.messages))
        if errors:
            raise ValidationError(errors)

    def _check_subgroups(self) -> None:
        if not isinstance(self.subgroups, list) or not all(isinstance(item, str) for item in self.subgroups):
            raise ValidationError('A list of subgroup fields, e.g. ["sex", "age_band"].')
        symptoms: frozenset[str] | None = None
        for position, item in enumerate(self.subgroups):
            if item in SUBGROUP_FIELDS:
                continue
            if item.startswith(SYMPTOM_SUBGROUP):
                if symptoms is None:
                    symptoms = _dictionary_symptoms(self.model_type_id)
                if item.removeprefix(SYMPTOM_SUBGROUP) in symptoms:
                    continue
                # The position, not the text: a key typed here could be anything.
                raise ValidationError(f"subgroups[{position}] names no symptom of the cohort's data dictionary.")
            raise ValidationError(f'subgroups[{position}] must be "sex", "age_band" or "symptom:<key>".')


def _dictionary_symptoms(model_type_id: int | None) -> frozenset[str]:
    from cases.dictionary.checking import current_dictionary
    from training.models import ModelType

    model_type = ModelType.objects.filter(pk=model_type_id).first() if model_type_id is not None else None
    if model_type is None:
        return frozenset()
    dictionary = current_dictionary(model_type.cohort)
    return dictionary.parsed.symptom_keys if dictionary is not None else frozenset()


def recipe_points(recipe: Any) -> list[tuple[str, dict[str, Any]]]:
    """The recipe's grid as (algorithm, full hyperparameters); ``ValidationError`` for a bad recipe."""
    from learning_engine.exceptions import InvalidRequest
    from training.algorithms import validate_hyperparameters

    if not isinstance(recipe, list) or not recipe:
        raise ValidationError('A non-empty list: [{"algorithm": "logistic_regression", "grid": {"C": [0.1, 1]}}].')
    points: list[tuple[str, dict[str, Any]]] = []
    for position, entry in enumerate(recipe):
        if not isinstance(entry, dict) or set(entry) - {"algorithm", "grid"} or "algorithm" not in entry:
            raise ValidationError(f'recipe[{position}] must be {{"algorithm": ..., "grid": {{...}}}}.')
        grid = entry.get("grid", {})
        if not isinstance(grid, dict) or not all(isinstance(values, list) and values for values in grid.values()):
            raise ValidationError(f"recipe[{position}].grid must map each hyperparameter to a non-empty list.")
        names = sorted(grid)
        for values in itertools.product(*(grid[name] for name in names)):
            try:
                params = validate_hyperparameters(str(entry["algorithm"]), dict(zip(names, values, strict=True)))
            except InvalidRequest as exc:
                raise ValidationError(f"recipe[{position}]: {exc.message}") from None
            points.append((str(entry["algorithm"]), params))
            if len(points) > MAX_GRID_POINTS:
                raise ValidationError(f"The recipe makes more than {MAX_GRID_POINTS} training jobs; narrow the grids.")
    return points
