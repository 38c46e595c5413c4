"""The monitoring API's answer: snapshots as stored, and the figures of a model type."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from models_registry.registry.serializers import CalibrationBinSerializer
from monitoring.figures import DEFAULT_HISTORY, MAX_HISTORY
from monitoring.models import MonitoringSnapshot


class DriftFigureSerializer(serializers.Serializer[Any]):
    psi = serializers.FloatField(allow_null=True, help_text="Against the training reference; null without one.")
    missing_rate = serializers.FloatField(allow_null=True)
    reference_missing_rate = serializers.FloatField(allow_null=True, help_text="In the training split.")
    out_of_range_rate = serializers.FloatField(
        allow_null=True, help_text="Outside the data dictionary's expected range."
    )


class MonitoringSnapshotSerializer(serializers.ModelSerializer[MonitoringSnapshot]):
    version = serializers.CharField(source="version.version", help_text="The version's label.")
    ab_test = serializers.IntegerField(source="ab_test_id", allow_null=True)
    drift = serializers.DictField(
        child=DriftFigureSerializer(), help_text="Per model input (age, sex, findings.<key>, symptoms.<key>)."
    )
    drifted = serializers.DictField(child=serializers.FloatField(), help_text="{input: PSI} at or above the threshold.")
    prediction_shares = serializers.DictField(child=serializers.FloatField())
    reference_prediction_shares = serializers.DictField(child=serializers.FloatField())
    calibration = CalibrationBinSerializer(many=True)

    class Meta:
        model = MonitoringSnapshot
        fields = [
            "id",
            "version",
            "ab_test",
            "arm",
            "computed_at",
            "since",
            "window_start",
            "predictions",
            "predictions_total",
            "labelled",
            "correct",
            "units",
            "live_accuracy",
            "accuracy_low",
            "accuracy_high",
            "offline_accuracy",
            "tolerance",
            "alpha",
            "degraded",
            "degradation_evidence",
            "degradation_window",
            "recent_start",
            "recent_units",
            "recent_accuracy",
            "recent_low",
            "recent_high",
            "recent_alpha",
            "has_reference",
            "inputs",
            "drift",
            "max_psi",
            "psi_threshold",
            "drifted",
            "prediction_shares",
            "reference_prediction_shares",
            "prediction_psi",
            "ece",
            "offline_ece",
            "calibration",
        ]
        read_only_fields = fields


class MonitoringSettingsSerializer(serializers.Serializer[Any]):
    tolerance = serializers.FloatField()
    alpha = serializers.FloatField()
    psi_threshold = serializers.FloatField()
    min_inputs = serializers.IntegerField()
    window_hours = serializers.IntegerField()
    interval_seconds = serializers.IntegerField()


class MonitoringSerializer(serializers.Serializer[Any]):
    model_type = serializers.CharField()
    version = serializers.CharField(
        allow_null=True, help_text="The version shown: the active one unless ?version= names another."
    )
    has_reference = serializers.BooleanField(
        help_text="Whether the version recorded a training reference (no PSI without one)."
    )
    settings = MonitoringSettingsSerializer()
    latest = MonitoringSnapshotSerializer(allow_null=True, help_text="The version's latest snapshot.")
    arms = MonitoringSnapshotSerializer(many=True, help_text="The latest snapshot of each running A/B test's arms.")
    history = MonitoringSnapshotSerializer(
        many=True, help_text="The version's snapshots, oldest first (the last ?limit=)."
    )


class MonitoringParamsSerializer(serializers.Serializer[Any]):
    version = serializers.CharField(
        required=False, max_length=32, help_text="A version label (v1.2.0); default the active version."
    )
    limit = serializers.IntegerField(
        required=False, min_value=1, max_value=MAX_HISTORY, default=DEFAULT_HISTORY, help_text="Snapshots of history."
    )
