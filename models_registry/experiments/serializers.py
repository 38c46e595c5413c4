"""Serializers of the A/B test API (``models_registry.experiments.views``).

Input: ``ABTestCreateSerializer`` (the original specification's payload plus the optional mode,
minimum labelled predictions per arm and significance level) and ``ABTestEndSerializer`` (the
reason of a stop or a conclusion). Output: ``ABTestSerializer`` for lists, ``ABTestDetailSerializer``
with the live figures (``models_registry.experiments.figures.live_figures``) and the audit trail. The
figures serializers document the shape of the figures' plain JSON in the OpenAPI schema.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from models_registry.experiments.models import (
    DEFAULT_MIN_LABELLED,
    DEFAULT_SIGNIFICANCE,
    MAX_DURATION_HOURS,
    MAX_MIN_LABELLED,
    MAX_SIGNIFICANCE,
    ABTest,
    ABTestTransition,
)
from models_registry.experiments.stats import Decision

MAX_REASON_LENGTH = 2000
DECISIONS = tuple(decision.value for decision in Decision)


# --- Input ----------------------------------------------------------------------------------------


class ABTestCreateSerializer(serializers.Serializer):
    model_version_a = serializers.CharField(max_length=32, help_text="A: the production version, e.g. v1.1.0.")
    model_version_b = serializers.CharField(max_length=32, help_text="B: the candidate, e.g. v1.2.0.")
    traffic_split = serializers.FloatField(
        min_value=0.0, max_value=1.0, help_text="Share of subjects sent to B (0 to 1; a split test: strictly)."
    )
    duration_hours = serializers.IntegerField(min_value=1, max_value=MAX_DURATION_HOURS)
    mode = serializers.ChoiceField(choices=ABTest.Mode.choices, default=ABTest.Mode.SPLIT)
    min_labelled_per_arm = serializers.IntegerField(
        min_value=1,
        max_value=MAX_MIN_LABELLED,
        default=DEFAULT_MIN_LABELLED,
        help_text="Predictions with feedback per arm before the decision can be anything but hold.",
    )
    significance_level = serializers.FloatField(
        min_value=0.0,
        max_value=MAX_SIGNIFICANCE,
        default=DEFAULT_SIGNIFICANCE,
        help_text=f"Alpha of the sequential test (above 0, at most {MAX_SIGNIFICANCE}).",
    )

    def validate_significance_level(self, value: float) -> float:
        if value <= 0:
            raise serializers.ValidationError("Must be above 0.")
        return value


class ABTestEndSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=MAX_REASON_LENGTH, help_text="Recorded on the test and its audit trail.")


class ABTestConcludeSerializer(ABTestEndSerializer):
    expected_decision = serializers.ChoiceField(
        choices=DECISIONS,
        required=False,
        help_text="The decision you saw. If it has changed since, nothing happens (409 decision_changed).",
    )


# --- Figures (documentation of ab_figures.live_figures) ------------------------------------------


class LatencySerializer(serializers.Serializer):
    p50 = serializers.FloatField(allow_null=True)
    p90 = serializers.FloatField(allow_null=True)
    p99 = serializers.FloatField(allow_null=True)


class ArmFiguresSerializer(serializers.Serializer):
    version = serializers.CharField()
    assigned = serializers.IntegerField(help_text="Units of assignment: distinct subjects plus unkeyed requests.")
    predicted = serializers.IntegerField(help_text="Predictions made (shadow B: silent ones).")
    unkeyed = serializers.IntegerField(help_text="Requests without a subject key (assigned at random).")
    labelled = serializers.IntegerField(help_text="Predictions with clinicians' feedback.")
    correct = serializers.IntegerField()
    accuracy = serializers.FloatField(allow_null=True)
    accuracy_interval = serializers.ListField(
        child=serializers.FloatField(), allow_null=True, help_text="95% Wilson interval [low, high]."
    )
    latency_ms = LatencySerializer(help_text="Percentiles of the latest predictions.")


class ArmsSerializer(serializers.Serializer):
    a = ArmFiguresSerializer()
    b = ArmFiguresSerializer()


class ShadowFiguresSerializer(serializers.Serializer):
    compared = serializers.IntegerField(help_text="Requests both versions predicted.")
    agreed = serializers.IntegerField()
    agreement = serializers.FloatField(allow_null=True)
    labelled = serializers.IntegerField(help_text="Compared requests with feedback.")
    only_a_correct = serializers.IntegerField()
    only_b_correct = serializers.IntegerField()


class SampleRatioSerializer(serializers.Serializer):
    p_value = serializers.FloatField(
        allow_null=True,
        help_text="Anytime-valid p-value of the assignment counts against the split (Dirichlet-multinomial "
        "mixture, Lindon and Malek 2022): valid however often it is read. Null in shadow mode.",
    )
    e_value = serializers.FloatField(
        allow_null=True, help_text="The mixture's e-value (1 / p-value before the cap at 1); null if infinite."
    )
    failed = serializers.BooleanField(help_text="p-value at most `level`: the test is invalid.")
    level = serializers.FloatField(help_text="0.01: an honest split is flagged in at most 1% of tests, ever.")
    expected_share_b = serializers.FloatField(allow_null=True)
    method = serializers.CharField(allow_null=True)


class DiagnosisFiguresSerializer(serializers.Serializer):
    code = serializers.CharField()
    display_name = serializers.CharField(
        help_text="The code's name in the versions' data dictionary; empty when no dictionary names it."
    )
    predicted = serializers.IntegerField(help_text="The arm's predictions of this code.")
    confirmed = serializers.IntegerField(help_text="The arm's predictions with feedback confirming this code.")
    correct = serializers.IntegerField(help_text="Of those, the ones the arm predicted (shadow B: on A's feedback).")


class PerDiagnosisSerializer(serializers.Serializer):
    a = DiagnosisFiguresSerializer(many=True)
    b = DiagnosisFiguresSerializer(many=True)


class ABFiguresSerializer(serializers.Serializer):
    mode = serializers.ChoiceField(choices=ABTest.Mode.choices)
    traffic_split = serializers.FloatField()
    arms = ArmsSerializer()
    shadow = ShadowFiguresSerializer(allow_null=True, help_text="Shadow mode only.")
    difference = serializers.ListField(
        child=serializers.FloatField(),
        allow_null=True,
        help_text="Accuracy of B minus A, per subject: the bounds of the anytime-valid confidence sequence "
        "(betting, Waudby-Smith and Ramdas 2024).",
    )
    srm = SampleRatioSerializer()
    min_labelled_reached = serializers.BooleanField()
    decision = serializers.ChoiceField(choices=DECISIONS, help_text="The decision on the figures of now.")
    reason = serializers.CharField()
    statistics = serializers.DictField(help_text="ab_stats' whole evaluation.")
    per_diagnosis = PerDiagnosisSerializer(
        required=False, help_text="Per arm, each diagnosis code with its name (absent from tests ended before it)."
    )
    computed_at = serializers.DateTimeField()


# --- Output ---------------------------------------------------------------------------------------


class ABTestTransitionSerializer(serializers.ModelSerializer):
    actor: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = ABTestTransition
        fields = ["from_state", "to_state", "actor", "reason", "created_at"]
        read_only_fields = fields


class ABTestSerializer(serializers.ModelSerializer):
    model_type: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    model_version_a = serializers.CharField(source="version_a.version", read_only=True)
    model_version_b = serializers.CharField(source="version_b.version", read_only=True)
    created_by: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(slug_field="username", read_only=True)
    concluded_by: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(
        slug_field="username", read_only=True, help_text="Who concluded or stopped it; null for the periodic task."
    )
    decision = serializers.CharField(read_only=True, help_text="The decision when the test ended; '' while running.")
    status = serializers.ChoiceField(choices=ABTest.Status.choices, read_only=True)

    class Meta:
        model = ABTest
        fields = [
            "id",
            "model_type",
            "model_version_a",
            "model_version_b",
            "traffic_split",
            "duration_hours",
            "mode",
            "min_labelled_per_arm",
            "significance_level",
            "status",
            "started_at",
            "ends_at",
            "ended_at",
            "created_by",
            "concluded_by",
            "reason",
            "decision",
            "promoted",
        ]
        read_only_fields = fields


class ABTestDetailSerializer(ABTestSerializer):
    figures = serializers.SerializerMethodField()
    transitions = ABTestTransitionSerializer(many=True, read_only=True, help_text="The test's audit trail.")

    class Meta(ABTestSerializer.Meta):
        fields = [*ABTestSerializer.Meta.fields, "figures", "transitions"]
        read_only_fields = fields

    @extend_schema_field(ABFiguresSerializer)
    def get_figures(self, test: ABTest) -> dict[str, Any]:
        """Live figures and the current decision, computed on every read."""
        return test.evaluate()


class ComparedABTestSerializer(ABTestSerializer):
    """The running or latest test of the two compared versions, with its live figures."""

    figures = ABFiguresSerializer()

    class Meta(ABTestSerializer.Meta):
        fields = [*ABTestSerializer.Meta.fields, "figures"]
        read_only_fields = fields
