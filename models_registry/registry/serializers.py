"""Serializers of the registry API: versions, performance records, history, comparison, upload.

Output
------
- ``ModelVersionSerializer`` for lists (key metrics, approval and deployment states);
  ``ModelVersionDetailSerializer`` adds the hyperparameters, every registered metric, the approval
  note and the version's audit trail.
- ``PerformanceRecordSerializer``: one evaluation (offline, reported or live).
- ``ActivationSerializer``: one row of the activation history.
- ``HistorySerializer`` / ``PointInTimeSerializer``: ``GET .../history/`` without and with ``?at=``.
- ``ComparisonSerializer``: ``GET .../compare/`` (documents ``models_registry.registry.compare``'s answer).

Input
-----
- ``ApprovalSerializer`` (``note``), ``DeploymentSerializer`` (``reason``).
- ``PerformanceReportSerializer``: the original specification's payload
  ``{"metrics": {...}, "test_set_size": 500}``; metrics are a bounded object of finite numbers.
- ``UploadSerializer``: an external trainer's artifact (multipart).
- ``HistoryParamsSerializer``, ``CompareParamsSerializer``: query parameters.

No PHI anywhere here: versions, metrics and audit rows hold none.
"""

from __future__ import annotations

import math
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from cases.dictionary.serializers import DictionaryVersionRefSerializer
from learning_engine.serializers import ErrorSerializer
from models_registry.registry.compare import VERDICTS
from models_registry.registry.evaluation import LABEL, RESERVED_LABELS
from models_registry.registry.models import ActivationHistory, ModelVersion, PerformanceRecord, VersionTransition
from training.ranges import usable_ranges

MAX_NOTE_LENGTH = 2000
MAX_METRICS = 50
MAX_METRIC_NAME = 64
MAX_TEST_SET_SIZE = 2**31 - 1
# Metrics shown in version lists (the rest are in the detail).
KEY_METRICS = ("accuracy", "f1_macro", "auroc_macro", "brier", "ece", "test_size")


class RegistryErrorSerializer(ErrorSerializer):
    """Every error of the registry API: a machine-readable ``code`` and a message, sometimes more."""

    version = serializers.CharField(required=False, help_text="The version whose artifact was refused.")
    untrusted_types = serializers.ListField(
        child=serializers.CharField(), required=False, help_text="Types an uploaded artifact would instantiate."
    )


# --- Versions: output -----------------------------------------------------------------------------


class KeyMetricsSerializer(serializers.Serializer):
    accuracy = serializers.FloatField(required=False, allow_null=True)
    f1_macro = serializers.FloatField(required=False, allow_null=True)
    auroc_macro = serializers.FloatField(required=False, allow_null=True)
    brier = serializers.FloatField(
        required=False,
        allow_null=True,
        help_text="scikit-learn's brier_score_loss: 0-1 for two labels, Brier's sum over labels (0-2) for more.",
    )
    ece = serializers.FloatField(
        required=False, allow_null=True, help_text="Expected calibration error (top label, 10 bins)."
    )
    test_size = serializers.IntegerField(required=False, allow_null=True)


class ModelVersionSerializer(serializers.ModelSerializer):
    model_type: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    job: serializers.PrimaryKeyRelatedField[Any] = serializers.PrimaryKeyRelatedField(read_only=True)
    dataset: serializers.PrimaryKeyRelatedField[Any] = serializers.PrimaryKeyRelatedField(read_only=True)
    created_by: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(slug_field="username", read_only=True)
    approved_by: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(slug_field="username", read_only=True)
    key_metrics = serializers.SerializerMethodField()
    dictionary = DictionaryVersionRefSerializer(
        read_only=True,
        allow_null=True,
        help_text="The data dictionary version the model was trained under: predict checks records against it. "
        "Null when its cohort had no published dictionary.",
    )

    class Meta:
        model = ModelVersion
        fields = [
            "id",
            "model_type",
            "version",
            "job",
            "dataset",
            "dictionary",
            "algorithm",
            "key_metrics",
            "approval_status",
            "approved_by",
            "approved_at",
            "deployment_status",
            "deployed_at",
            "deactivated_at",
            "artifact_sha256",
            "artifact_format",
            "created_by",
            "created_at",
        ]
        read_only_fields = fields

    @extend_schema_field(KeyMetricsSerializer)
    def get_key_metrics(self, version: ModelVersion) -> dict[str, Any]:
        metrics = version.metrics if isinstance(version.metrics, dict) else {}
        return {key: metrics[key] for key in KEY_METRICS if key in metrics}


class RangeSerializer(serializers.Serializer):
    min = serializers.FloatField()
    max = serializers.FloatField()


class VersionTransitionSerializer(serializers.ModelSerializer):
    actor: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = VersionTransition
        fields = ["from_state", "to_state", "actor", "reason", "created_at"]
        read_only_fields = fields


class TrainingRangesField(serializers.DictField):
    """A version's training ranges as predict uses them (``training.ranges.usable_ranges``): an
    entry that is not two finite numbers in order is left out, not a 500."""

    def to_representation(self, value: Any) -> dict[str, Any]:
        return super().to_representation(usable_ranges(value))


class ModelVersionDetailSerializer(ModelVersionSerializer):
    training_ranges = TrainingRangesField(
        child=RangeSerializer(),
        read_only=True,
        help_text='Per numeric model input ("age", "findings.<key>"), min and max of the train split: predict '
        "warns out_of_range outside them. Empty when not measured (then the dictionary's expected range).",
    )
    transitions = VersionTransitionSerializer(many=True, read_only=True, help_text="The version's audit trail.")

    class Meta(ModelVersionSerializer.Meta):
        fields = [
            *ModelVersionSerializer.Meta.fields,
            "hyperparameters",
            "metrics",
            "approval_note",
            "artifact",
            "training_ranges",
            "transitions",
        ]
        read_only_fields = fields


# --- Versions: input ------------------------------------------------------------------------------


class ApprovalSerializer(serializers.Serializer):
    note = serializers.CharField(max_length=MAX_NOTE_LENGTH, required=False, allow_blank=True, default="")


class DeploymentSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=MAX_NOTE_LENGTH, required=False, allow_blank=True, default="")


class UploadSerializer(serializers.Serializer):
    """An external trainer's artifact for its completed job (multipart/form-data)."""

    job = serializers.IntegerField(min_value=1, max_value=2**63 - 1, help_text="The completed external job's id.")
    artifact = serializers.FileField(help_text="The skops file (trusted types only; nothing is unpickled).")
    version = serializers.CharField(
        max_length=32,
        required=False,
        help_text="Your own unique label (letters, digits, '.', '_', '+', '-'). Absent: the next v1.N.0.",
    )

    def validate_version(self, value: str) -> str:
        if not LABEL.match(value) or value.lower() in RESERVED_LABELS:
            raise serializers.ValidationError(
                "Letters, digits, '.', '_', '+' or '-', starting with a letter or digit (and not 'upload')."
            )
        return value


# --- Performance ----------------------------------------------------------------------------------


class PerformanceRecordSerializer(serializers.ModelSerializer):
    version = serializers.CharField(source="version.version", read_only=True)
    dataset: serializers.PrimaryKeyRelatedField[Any] = serializers.PrimaryKeyRelatedField(read_only=True)
    created_by: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(slug_field="username", read_only=True)
    metrics = serializers.DictField(
        read_only=True,
        help_text="offline: the registry's evaluation (training issue metrics); reported: as the client sent "
        "them (never used for a decision); live: from clinicians' feedback.",
    )

    class Meta:
        model = PerformanceRecord
        fields = ["id", "version", "source", "dataset", "metrics", "test_set_size", "created_by", "created_at"]
        read_only_fields = fields


class MetricsField(serializers.DictField):
    """An object of metric name -> finite number, at most ``MAX_METRICS`` of them."""

    child = serializers.FloatField()

    def to_internal_value(self, data: Any) -> dict[str, float]:
        if not isinstance(data, dict):
            raise serializers.ValidationError("Must be an object of metric name -> number.")
        if not data:
            raise serializers.ValidationError("Give at least one metric.")
        if len(data) > MAX_METRICS:
            raise serializers.ValidationError(f"At most {MAX_METRICS} metrics.")
        errors: dict[str, list[str]] = {}
        values: dict[str, float] = {}
        for name, value in data.items():
            if not isinstance(name, str) or not name or len(name) > MAX_METRIC_NAME:
                errors[str(name)[:MAX_METRIC_NAME]] = [f"A metric name is 1 to {MAX_METRIC_NAME} characters."]
            elif isinstance(value, bool) or not isinstance(value, (int, float)):
                errors[name] = ["Must be a number."]
            elif abs(value) > 1e15 or not math.isfinite(value):  # the bound first: float(10**400) overflows
                errors[name] = ["Must be a finite number."]
            else:
                values[name] = value
        if errors:
            raise serializers.ValidationError(errors)
        return values


class PerformanceReportSerializer(serializers.Serializer):
    """The original specification's payload: ``{"metrics": {"accuracy": 0.91, ...}, "test_set_size": 500}``."""

    metrics = MetricsField(help_text=f"Metric name -> number (at most {MAX_METRICS}); stored as reported.")
    test_set_size = serializers.IntegerField(min_value=1, max_value=MAX_TEST_SET_SIZE)


# --- History --------------------------------------------------------------------------------------


class ActivationSerializer(serializers.ModelSerializer):
    from_version = serializers.CharField(source="from_version.version", read_only=True, allow_null=True, default=None)
    to_version = serializers.CharField(source="to_version.version", read_only=True, allow_null=True, default=None)
    actor: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = ActivationHistory
        fields = ["id", "from_version", "to_version", "actor", "reason", "created_at"]
        read_only_fields = fields


class PerformancePointSerializer(serializers.Serializer):
    # A declared field named like DRF's own Field.source attribute: fine at runtime (the metaclass
    # collects declared fields), but the stubs see the attribute.
    source = serializers.ChoiceField(choices=PerformanceRecord.Source.choices)  # type: ignore[assignment]
    dataset = serializers.IntegerField(allow_null=True)
    metrics = KeyMetricsSerializer(help_text="The key metrics of the record.")
    test_set_size = serializers.IntegerField()
    created_at = serializers.DateTimeField()


class VersionHistorySerializer(serializers.Serializer):
    version = serializers.CharField()
    approval_status = serializers.ChoiceField(choices=ModelVersion.Approval.choices)
    deployment_status = serializers.ChoiceField(choices=ModelVersion.Deployment.choices)
    created_at = serializers.DateTimeField()
    deployed_at = serializers.DateTimeField(allow_null=True)
    deactivated_at = serializers.DateTimeField(allow_null=True)
    performance = PerformancePointSerializer(many=True, help_text="Oldest first; the latest records only.")
    performance_truncated = serializers.BooleanField()


class HistorySerializer(serializers.Serializer):
    model_type = serializers.CharField()
    active_version = serializers.CharField(allow_null=True)
    versions = VersionHistorySerializer(many=True)
    activations = ActivationSerializer(many=True, help_text="Every activation change, oldest first.")


class PointInTimeSerializer(serializers.Serializer):
    model_type = serializers.CharField()
    at = serializers.DateTimeField()
    active_version = ModelVersionSerializer(allow_null=True, help_text="The version active at that time, if any.")
    activated_at = serializers.DateTimeField(
        allow_null=True, help_text="When the activation change that was in force at that time happened."
    )


class HistoryParamsSerializer(serializers.Serializer):
    at = serializers.DateTimeField(
        required=False, help_text="An ISO 8601 time: answer which version was active then (and only that)."
    )


# --- Comparison -----------------------------------------------------------------------------------


class CompareParamsSerializer(serializers.Serializer):
    a = serializers.CharField(max_length=32, help_text="A version label, e.g. v1.1.0.")
    b = serializers.CharField(max_length=32, help_text="Another version label, e.g. v1.2.0.")


class LiveAccuracySerializer(serializers.Serializer):
    accuracy = serializers.FloatField(allow_null=True)
    n = serializers.IntegerField(help_text="Predictions with feedback behind it.")
    recorded_at = serializers.DateTimeField()


class CalibrationBinSerializer(serializers.Serializer):
    low = serializers.FloatField()
    high = serializers.FloatField()
    count = serializers.IntegerField()
    confidence = serializers.FloatField(allow_null=True, help_text="Mean probability of the predicted label.")
    accuracy = serializers.FloatField(allow_null=True)


class CalibrationSerializer(serializers.Serializer):
    bins = CalibrationBinSerializer(many=True, help_text="The reliability diagram: 10 equal-width bins.")
    ece = serializers.FloatField()
    ece_ci = serializers.ListField(child=serializers.FloatField(), help_text="95% bootstrap interval.")
    method = serializers.CharField()


class ComparedMetricsSerializer(KeyMetricsSerializer):
    f1_weighted = serializers.FloatField(required=False, allow_null=True)
    precision_macro = serializers.FloatField(required=False, allow_null=True)
    recall_macro = serializers.FloatField(required=False, allow_null=True)
    accuracy_ci = serializers.ListField(child=serializers.FloatField(), required=False, allow_null=True)
    f1_macro_ci = serializers.ListField(child=serializers.FloatField(), required=False, allow_null=True)
    ece_ci = serializers.ListField(child=serializers.FloatField(), required=False, allow_null=True)
    brier_definition = serializers.CharField(required=False)
    calibration = CalibrationSerializer(required=False)


class ComparedVersionSerializer(serializers.Serializer):
    version = serializers.CharField()
    approval_status = serializers.ChoiceField(choices=ModelVersion.Approval.choices)
    deployment_status = serializers.ChoiceField(choices=ModelVersion.Deployment.choices)
    algorithm = serializers.CharField()
    dataset = serializers.IntegerField(allow_null=True, help_text="The snapshot it was registered with.")
    artifact_sha256 = serializers.CharField()
    metrics = ComparedMetricsSerializer(help_text="On the shared test cases.")
    registered_metrics = serializers.DictField(help_text="As registered (on its own snapshot).")
    live = LiveAccuracySerializer(allow_null=True, help_text="From clinicians' feedback, when there is some.")


class ComparedTestSetSerializer(serializers.Serializer):
    dataset = serializers.IntegerField(help_text="The snapshot whose test split both versions were scored on.")
    cases = serializers.IntegerField()
    labels = serializers.ListField(child=serializers.CharField())
    same_snapshot = serializers.BooleanField()
    reevaluated = serializers.ListField(
        child=serializers.CharField(), help_text="Versions scored on a snapshot other than their own."
    )


class DifferenceSerializer(serializers.Serializer):
    metric = serializers.CharField()
    a = serializers.FloatField(allow_null=True)
    b = serializers.FloatField(allow_null=True)
    difference = serializers.FloatField(allow_null=True, help_text="b - a.")
    ci = serializers.ListField(
        child=serializers.FloatField(),
        allow_null=True,
        help_text="95% interval of b - a: exact from the discordant pairs for accuracy (it excludes 0 exactly when "
        "McNemar's test rejects); a paired bootstrap for macro-F1 and Brier (null below 30 cases).",
    )
    interval_method = serializers.CharField(allow_null=True, help_text="How `ci` was computed; null without one.")
    higher_is_better = serializers.BooleanField()


class McNemarSerializer(serializers.Serializer):
    both_correct = serializers.IntegerField()
    a_only_correct = serializers.IntegerField()
    b_only_correct = serializers.IntegerField()
    both_wrong = serializers.IntegerField()
    discordant = serializers.IntegerField()
    p_value = serializers.FloatField()
    test = serializers.CharField()


class BootstrapSerializer(serializers.Serializer):
    resamples = serializers.IntegerField()
    seed = serializers.IntegerField()
    confidence = serializers.FloatField()
    method = serializers.CharField()


class SampleSizeSerializer(serializers.Serializer):
    difference = serializers.FloatField(help_text="The accuracy difference the comparison should detect (0.05).")
    power = serializers.FloatField()
    cases_needed = serializers.IntegerField(
        help_text="Test cases McNemar's test needs to detect `difference` with `power` at this rate of disagreement."
    )
    method = serializers.CharField()


class ComparisonSerializer(serializers.Serializer):
    model_type = serializers.CharField()
    a = ComparedVersionSerializer()
    b = ComparedVersionSerializer()
    test_set = ComparedTestSetSerializer()
    differences = DifferenceSerializer(many=True)
    mcnemar = McNemarSerializer()
    verdict = serializers.ChoiceField(
        choices=VERDICTS,
        help_text="a_better / b_better: McNemar's exact test rejects at alpha. no_significant_difference: it does not, "
        "and the accuracy interval rules out a 5-point difference. insufficient_evidence: it does not, and the "
        "test set is too small to rule one out (see sample_size).",
    )
    sample_size = SampleSizeSerializer()
    alpha = serializers.FloatField()
    bootstrap = BootstrapSerializer()
    cached = serializers.BooleanField(help_text="Served from the comparison cache.")
    # Declared by the A/B tests' layer (``declare_ab_test_field``), as null until then.
    ab_test = serializers.JSONField(allow_null=True, required=False)


def declare_ab_test_field(field: serializers.Field) -> None:
    """The comparison's ``ab_test`` field, as the layer above it (``models_registry.experiments``)
    serializes and documents a test; called from ``AppConfig.ready()`` (a callback this layer
    declares: the registry never imports the experiments), before any schema or response is made.
    """
    ComparisonSerializer._declared_fields["ab_test"] = field
