"""Monitoring of the serving versions: reference profiles, live input tallies, and snapshots.

- ``ReferenceProfile``: a version's training-split distribution per model input
  (``monitoring.profiles``), recorded once when the version is registered from a snapshot. A version
  registered before monitoring existed, or without a snapshot (an upload that named none), has
  none: its snapshots say so (``has_reference``) and carry no PSI.
- ``InputTally``: counts of the inputs one predict request gave one version (per A/B arm), binned
  with the version's reference; written by serving's input observer. Counts only, no values.
- ``MonitoringSnapshot``: the figures of one version (or one A/B arm) at one time, computed
  periodically (``monitoring.tasks``) or by ``manage.py monitor``. Append-only: the history is
  the chart.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from learning_engine.audit import AppendOnlyModel


class ReferenceProfile(models.Model):
    version = models.OneToOneField(
        "models_registry.ModelVersion", on_delete=models.CASCADE, primary_key=True, related_name="reference_profile"
    )
    dataset = models.ForeignKey("training.DatasetSnapshot", on_delete=models.PROTECT, related_name="+")
    train_size = models.PositiveIntegerField()
    profile = models.JSONField(help_text="Per model input: quantile bins or categories, counts and missing count.")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "reference profile"

    def __str__(self) -> str:
        return f"Reference of {self.version_id} ({self.train_size} training rows)"


class InputTally(models.Model):
    version = models.ForeignKey("models_registry.ModelVersion", on_delete=models.CASCADE, related_name="+")
    ab_test = models.ForeignKey(
        "models_registry.ABTest", on_delete=models.CASCADE, null=True, blank=True, related_name="+", db_index=False
    )
    arm = models.CharField(max_length=32, blank=True)
    count = models.PositiveIntegerField()
    tally = models.JSONField(help_text="monitoring.profiles.Tally: per input, counts per bin (missing last).")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["version", "created_at"], name="input_tally_version_time")]

    def __str__(self) -> str:
        return f"{self.count} inputs of {self.version_id} at {self.created_at:%Y-%m-%d %H:%M}"


class MonitoringSnapshot(AppendOnlyModel):
    model_type = models.ForeignKey("training.ModelType", on_delete=models.PROTECT, related_name="+")
    version = models.ForeignKey("models_registry.ModelVersion", on_delete=models.PROTECT, related_name="+")
    ab_test = models.ForeignKey(
        "models_registry.ABTest",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name="A/B test",
    )
    arm = models.CharField(max_length=32, blank=True, help_text="The A/B arm; blank: all of the version's answers.")
    computed_at = models.DateTimeField(default=timezone.now, db_index=True)
    since = models.DateTimeField(help_text="Start of the cumulative figures: the activation, or the test's start.")
    window_start = models.DateTimeField(help_text="Start of the window of the drift and volume figures.")

    # Volume
    predictions = models.PositiveIntegerField(help_text="Answers in the window.")
    predictions_total = models.PositiveIntegerField(help_text="Answers since `since`.")
    labelled = models.PositiveIntegerField(help_text="Of those since `since`, with feedback.")
    correct = models.PositiveIntegerField()

    # Live accuracy (since `since`), anytime-valid interval, degradation
    units = models.PositiveIntegerField(default=0, help_text="Units with feedback (subjects; unkeyed requests).")
    live_accuracy = models.FloatField(null=True, blank=True)
    accuracy_low = models.FloatField(null=True, blank=True)
    accuracy_high = models.FloatField(null=True, blank=True)
    offline_accuracy = models.FloatField(null=True, blank=True)
    tolerance = models.FloatField()
    alpha = models.FloatField()
    degraded = models.BooleanField(default=False, help_text="Decided over the recent units (the recent_ figures).")
    degradation_evidence = models.FloatField(null=True, blank=True)

    # The recent units the degradation rule reads (monitoring.stats.recent_accuracy): a fresh
    # sequence every `degradation_window` units, with its own share of alpha (`recent_alpha`).
    degradation_window = models.PositiveIntegerField(default=0, help_text="Units per epoch; 0: all since `since`.")
    recent_start = models.PositiveIntegerField(default=0, help_text="Index of the first unit the reading reads.")
    recent_units = models.PositiveIntegerField(default=0)
    recent_accuracy = models.FloatField(null=True, blank=True)
    recent_low = models.FloatField(null=True, blank=True)
    recent_high = models.FloatField(null=True, blank=True)
    recent_alpha = models.FloatField(null=True, blank=True, help_text="The alpha spent on the recent reading.")

    # Inputs in the window
    has_reference = models.BooleanField(default=False)
    inputs = models.PositiveIntegerField(default=0, help_text="Inputs tallied in the window.")
    drift = models.JSONField(
        default=dict, help_text="{input: {psi, missing_rate, reference_missing_rate, out_of_range_rate}}"
    )
    max_psi = models.FloatField(null=True, blank=True)
    psi_threshold = models.FloatField()
    drifted = models.JSONField(default=dict, help_text="{input: psi} of the inputs at or above the threshold.")

    # Predictions in the window and calibration since `since`
    prediction_shares = models.JSONField(default=dict, help_text="{code: share of the answers in the window}")
    reference_prediction_shares = models.JSONField(default=dict, help_text="{code: share on the offline test split}")
    prediction_psi = models.FloatField(null=True, blank=True)
    ece = models.FloatField(null=True, blank=True)
    offline_ece = models.FloatField(null=True, blank=True)
    calibration = models.JSONField(default=list, help_text="Reliability bins of the labelled predictions.")

    class Meta:
        ordering = ["-computed_at", "-id"]
        indexes = [models.Index(fields=["version", "ab_test", "computed_at"], name="snapshot_version_time")]
        verbose_name = "monitoring snapshot"

    def __str__(self) -> str:
        arm = f" arm {self.arm}" if self.arm else ""
        return f"{self.version_id}{arm} at {self.computed_at:%Y-%m-%d %H:%M}"
