"""Serializers of the training API: model types, dataset snapshots and training jobs.

Output
------
- ``ModelTypeSerializer``.
- ``DatasetSnapshotSerializer`` for lists; ``DatasetSnapshotDetailSerializer`` adds the scan
  report and, on request (``?include=manifest``), the manifest. A manifest holds every case id of
  the snapshot (hundreds of kilobytes for a large cohort), and the file carries the same ids and
  splits, so it is never in a list and only in a detail when asked for.
- ``TrainingJobSerializer`` for lists; ``TrainingJobDetailSerializer`` adds the per-epoch history,
  the evaluation and the error log (each can be long). Neither ever shows the lease: it is the
  worker's secret, and whoever holds it can write the job's progress and results. The one answer
  that carries it is ``start``'s, to the external trainer that started the job
  (``TrainingJobStartedSerializer``).

Input
-----
- ``DatasetCreateSerializer``: what ``training.datasets.create_snapshot`` takes.
- ``TrainingJobCreateSerializer``: what ``TrainingJob.submit`` takes. Hyperparameters may come as
  top-level keys, as the original specification wrote them (``{"model_type": "diagnosis",
  "batch_size": 32, "epochs": 10}``), in a ``hyperparameters`` object, or both. The values are
  checked by ``TrainingJob.submit`` (``training.algorithms``), against the algorithm the job
  will really run. A key that is neither a field nor a hyperparameter name is refused, so a typo
  (``"epoch": 10``) is a 400 instead of a job trained with the default.
- The external trainer's bodies: ``JobProgressSerializer``, ``JobCompleteSerializer``,
  ``JobFailSerializer``; and ``JobCancelSerializer``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.settings import api_settings

from cases.dictionary.serializers import DictionaryVersionRefSerializer
from learning_engine.serializers import ErrorSerializer
from training.algorithms import SPECS
from training.models import DatasetSnapshot, ModelType, TrainingJob
from training.models.dataset import date_range_errors, visible_to
from training.splitting import SPLIT_NAMES, check_fractions

HYPERPARAMETER_NAMES = frozenset(name for spec in SPECS.values() for name in spec)
MAX_ATTEMPTS = 20
MAX_REASON_LENGTH = 2000
# Reported metrics are stored as given; these bound what one request can add to a job row.
MAX_METRICS_BYTES = 32 * 1024
MAX_EPOCH_BYTES = 4 * 1024
MAX_SEED = 2**31 - 1


# --- Shared pieces --------------------------------------------------------------------------------


class TrainingErrorSerializer(ErrorSerializer):
    """Every error of the training API: a machine-readable ``code`` and a message, sometimes more."""

    field = serializers.CharField(required=False, help_text="The bad hyperparameter (code 'invalid_hyperparameters').")
    dataset_id = serializers.IntegerField(
        required=False, help_text="The ready snapshot that already has this content (code 'duplicate_dataset')."
    )


class FiniteFloatField(serializers.FloatField):
    """A number; "NaN" and "Infinity" (which DRF takes as strings) are refused, not compared."""

    def to_internal_value(self, data: Any) -> float:
        value = super().to_internal_value(data)
        if not math.isfinite(value):
            raise serializers.ValidationError("Must be a finite number.")
        return value


def bounded_json(limit: int) -> Any:
    """A validator: the value, as JSON, is at most ``limit`` bytes."""

    def validate(value: Any) -> None:
        try:
            size = len(json.dumps(value, allow_nan=False).encode())
        except ValueError:
            raise serializers.ValidationError("Must be plain JSON (finite numbers).") from None
        if size > limit:
            raise serializers.ValidationError(f"At most {limit} bytes of JSON.")

    return validate


# --- Model types ----------------------------------------------------------------------------------


class ModelTypeSerializer(serializers.ModelSerializer):
    class Meta:
        model = ModelType
        fields = [
            "slug",
            "name",
            "description",
            "cohort",
            "label_field",
            "default_algorithm",
            "default_hyperparameters",
            "epoch_algorithm",
            "min_cases_to_train",
            "min_quality",
            "created_at",
        ]
        read_only_fields = fields


# --- Dataset snapshots: output --------------------------------------------------------------------


class ScanFindingSerializer(serializers.Serializer):
    case_id = serializers.IntegerField(required=False)
    field = serializers.CharField(required=False, help_text="Where in the file: a column, list item or map key/value.")
    kind = serializers.CharField(
        required=False, help_text="The kind of identifier (NAME, PHONE, ...), never the identifier."
    )


class ScanReportSerializer(serializers.Serializer):
    """The residual-identifier scan, by case, field and kind. Its keys are listed here one by one,
    so nothing the scanner might add later reaches API clients unreviewed."""

    clean = serializers.BooleanField(required=False)
    cases_scanned = serializers.IntegerField(required=False)
    strings_scanned = serializers.IntegerField(required=False)
    findings_total = serializers.IntegerField(required=False)
    findings_truncated = serializers.BooleanField(required=False)
    findings = ScanFindingSerializer(many=True, required=False)


class DatasetManifestSerializer(serializers.Serializer):
    """Case ids per split; empty (``{}``) until the snapshot is ready."""

    train = serializers.ListField(child=serializers.IntegerField(), required=False)
    validation = serializers.ListField(child=serializers.IntegerField(), required=False)
    test = serializers.ListField(child=serializers.IntegerField(), required=False)


class DatasetSnapshotSerializer(serializers.ModelSerializer):
    model_type: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    created_by: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(slug_field="username", read_only=True)
    split_counts = serializers.SerializerMethodField()
    label_counts = serializers.SerializerMethodField()
    dictionary = DictionaryVersionRefSerializer(
        read_only=True,
        allow_null=True,
        help_text="The cohort's data dictionary version the snapshot was built under; null when the cohort had "
        "none published, or for a snapshot built before dictionaries whose cases were not all checked against one.",
    )

    class Meta:
        model = DatasetSnapshot
        fields = [
            "id",
            "model_type",
            "status",
            "dictionary",
            "filters",
            "seed",
            "validation_fraction",
            "test_fraction",
            "case_count",
            "patient_count",
            "split_counts",
            "label_counts",
            "policy_version",
            "content_hash",
            "file_sha256",
            "file_size",
            "error",
            "created_by",
            "created_at",
            "finished_at",
        ]
        read_only_fields = fields

    @extend_schema_field(
        {
            "type": "object",
            "additionalProperties": {"type": "integer"},
            "description": "Cases per split (train, validation, test); empty until the snapshot is ready.",
        }
    )
    def get_split_counts(self, snapshot: DatasetSnapshot) -> dict[str, int]:
        counts = snapshot.label_counts or {}
        return {name: sum(counts[name].values()) for name in SPLIT_NAMES if name in counts}

    @extend_schema_field(
        {
            "type": "object",
            "additionalProperties": {"type": "object", "additionalProperties": {"type": "integer"}},
            "description": "Cases per label, per split: {split: {label: count}}.",
        }
    )
    def get_label_counts(self, snapshot: DatasetSnapshot) -> dict[str, dict[str, int]]:
        return snapshot.label_counts or {}


class DatasetSnapshotDetailSerializer(DatasetSnapshotSerializer):
    scan_report = serializers.SerializerMethodField()
    # Not read-only, so that the schema shows it as optional: it is there only when asked for.
    manifest = DatasetManifestSerializer(
        required=False, help_text="Case ids per split; only with ?include=manifest (and once ready)."
    )

    class Meta(DatasetSnapshotSerializer.Meta):
        fields = [*DatasetSnapshotSerializer.Meta.fields, "scan_report", "manifest"]
        read_only_fields = DatasetSnapshotSerializer.Meta.fields

    @extend_schema_field(ScanReportSerializer(allow_null=True))
    def get_scan_report(self, snapshot: DatasetSnapshot) -> dict[str, Any] | None:
        report = snapshot.scan_report
        return ScanReportSerializer(report).data if report else None

    def to_representation(self, instance: DatasetSnapshot) -> dict[str, Any]:
        # get_fields cannot see the instance of a many=True child; this covers that case too.
        data = super().to_representation(instance)
        if not self.context.get("include_manifest"):
            data.pop("manifest", None)
        return data

    def get_fields(self) -> dict[str, serializers.Field]:
        fields = super().get_fields()
        # Without the manifest asked for, the view defers the column: reading it would cost a query.
        if self.instance is not None and not self.context.get("include_manifest"):
            fields.pop("manifest", None)
        return fields


class DatasetDetailParamsSerializer(serializers.Serializer):
    include = serializers.ChoiceField(
        choices=["manifest"], required=False, help_text="'manifest': add the case ids per split to the answer."
    )


# --- Dataset snapshots: input ---------------------------------------------------------------------


class DatasetCreateSerializer(serializers.Serializer):
    """A snapshot to build: which model type's cohort, which cases, how to split them."""

    model_type = serializers.SlugRelatedField(slug_field="slug", queryset=ModelType.objects.all())
    min_quality = FiniteFloatField(
        min_value=0.0,
        max_value=1.0,
        required=False,
        allow_null=True,
        help_text="Minimum quality score of the cases; the model type's default when absent.",
    )
    encounter_after = serializers.DateField(
        required=False,
        allow_null=True,
        help_text="Encounters on or after this date. Without the PHI permission: a 1 January (whole years).",
    )
    encounter_before = serializers.DateField(
        required=False,
        allow_null=True,
        help_text="Encounters on or before this date. Without the PHI permission: a 31 December (whole years).",
    )
    validation_fraction = FiniteFloatField(
        required=False, default=0.15, help_text="0 <= fraction < 1; validation + test < 1."
    )
    test_fraction = FiniteFloatField(required=False, default=0.2, help_text="0 < fraction < 1; validation + test < 1.")
    seed = serializers.IntegerField(min_value=0, max_value=MAX_SEED, required=False, default=0)
    force = serializers.BooleanField(
        required=False,
        default=False,
        help_text="Build even when a ready snapshot of the model type already has the same content "
        "(else 409 'duplicate_dataset' with its id in 'dataset_id').",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        errors: dict[str, list[str]] = {}
        validation, test = attrs["validation_fraction"], attrs["test_fraction"]
        if not 0.0 <= validation < 1.0:
            errors["validation_fraction"] = ["Must be at least 0 and less than 1."]
        if not 0.0 < test < 1.0:
            errors["test_fraction"] = ["Must be greater than 0 (a model needs a test split) and less than 1."]
        if not errors:
            try:
                check_fractions(validation, test)  # the builder's own rule, whatever it says beyond ours
            except ValueError as error:
                errors["test_fraction"] = [str(error)]
        # The domain's rule (also enforced by create_snapshot), asked here so each error stands
        # beside its field: whole years only without the PHI permission.
        request = self.context.get("request")
        for field, messages in date_range_errors(
            attrs.get("encounter_after"), attrs.get("encounter_before"), by=getattr(request, "user", None)
        ).items():
            errors.setdefault(field, []).extend(messages)
        if errors:
            raise serializers.ValidationError(errors)
        return attrs


# --- Training jobs: output ------------------------------------------------------------------------


class TrainingJobSerializer(serializers.ModelSerializer):
    model_type: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    dataset: serializers.PrimaryKeyRelatedField[Any] = serializers.PrimaryKeyRelatedField(read_only=True)
    created_by: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = TrainingJob
        fields = [
            "id",
            "model_type",
            "dataset",
            "algorithm",
            "hyperparameters",
            "priority",
            "executor",
            "status",
            "progress",
            "stage",
            "metrics",
            "attempts",
            "max_attempts",
            "worker_id",
            "heartbeat_at",
            "artifact_sha256",
            "created_by",
            "created_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields


class TrainingJobDetailSerializer(TrainingJobSerializer):
    class Meta(TrainingJobSerializer.Meta):
        fields = [*TrainingJobSerializer.Meta.fields, "history", "evaluation", "error_log"]
        read_only_fields = fields


class TrainingJobStartedSerializer(TrainingJobDetailSerializer):
    """``start``'s answer to an external trainer: the job and the lease its later writes need."""

    lease = serializers.UUIDField(read_only=True, help_text="Send it with every progress, complete and fail.")

    class Meta(TrainingJobDetailSerializer.Meta):
        fields = [*TrainingJobDetailSerializer.Meta.fields, "lease"]
        read_only_fields = fields


# --- Training jobs: input -------------------------------------------------------------------------


class TrainingJobCreateSerializer(serializers.Serializer):
    """A job to submit. Hyperparameters may also be given as top-level keys (see the module docstring)."""

    model_type = serializers.SlugRelatedField(slug_field="slug", queryset=ModelType.objects.all())
    dataset = serializers.PrimaryKeyRelatedField(
        # Only what the checks below and TrainingJob.submit read; a manifest can be large.
        queryset=DatasetSnapshot.objects.only("id", "model_type", "status"),
        required=False,
        allow_null=True,
        help_text="A ready snapshot of the same model type. Absent: the job prepares a fresh one first "
        "(built-in worker only).",
    )
    algorithm = serializers.ChoiceField(
        choices=ModelType.Algorithm.choices,
        required=False,
        allow_null=True,
        help_text="Absent: the model type's epoch-based algorithm when epochs or batch_size are given, "
        "else its default algorithm.",
    )
    hyperparameters = serializers.DictField(
        required=False,
        default=dict,
        help_text=f"Any of: {', '.join(sorted(HYPERPARAMETER_NAMES))} (per algorithm). May also be given "
        "as top-level keys of the body.",
    )
    priority = serializers.IntegerField(min_value=-100, max_value=100, default=0, help_text="Higher runs first.")
    max_attempts = serializers.IntegerField(min_value=1, max_value=MAX_ATTEMPTS, default=3)
    executor = serializers.ChoiceField(
        choices=TrainingJob.Executor.choices,
        default=TrainingJob.Executor.WORKER,
        help_text="'worker': the built-in worker runs it. 'external': an external trainer drives it "
        "through start / progress / complete / fail.",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # A snapshot the caller may not see (a range finer than whole years, without the PHI
        # permission) does not exist for them here either: no job on it, no counts from it.
        request = self.context.get("request")
        dataset = self.fields["dataset"]
        assert isinstance(dataset, serializers.PrimaryKeyRelatedField)
        dataset.queryset = visible_to(dataset.queryset, getattr(request, "user", None))  # type: ignore[arg-type]

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if not isinstance(data, Mapping):
            return super().to_internal_value(data)  # DRF's own "expected a dictionary" error
        top_level = {key: data[key] for key in data if key in HYPERPARAMETER_NAMES}
        unknown = sorted(str(key) for key in data if key not in self.fields and key not in HYPERPARAMETER_NAMES)
        errors: dict[str, Any] = {
            key: [f"Unknown field. Hyperparameters are: {', '.join(sorted(HYPERPARAMETER_NAMES))}."] for key in unknown
        }
        try:
            values = super().to_internal_value({key: value for key, value in data.items() if key not in top_level})
        except serializers.ValidationError as error:
            detail = (
                error.detail if isinstance(error.detail, dict) else {api_settings.NON_FIELD_ERRORS_KEY: error.detail}
            )
            raise serializers.ValidationError({**errors, **detail}) from None
        explicit = values.get("hyperparameters") or {}
        for key, value in top_level.items():
            if key in explicit and explicit[key] != value:
                errors[key] = ["Given at the top level and in hyperparameters, with different values."]
        if errors:
            raise serializers.ValidationError(errors)
        values["hyperparameters"] = {**explicit, **top_level}
        return values

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        dataset, model_type = attrs.get("dataset"), attrs["model_type"]
        if dataset is not None:
            if dataset.model_type_id != model_type.pk:
                raise serializers.ValidationError(
                    {"dataset": [f"Dataset {dataset.pk} belongs to another model type, not {model_type.slug}."]}
                )
            if dataset.status != DatasetSnapshot.Status.READY:
                raise serializers.ValidationError(
                    {"dataset": [f"Dataset {dataset.pk} is {dataset.status}; a job needs a ready dataset."]}
                )
        elif attrs["executor"] == TrainingJob.Executor.EXTERNAL:
            # Only the built-in worker prepares a snapshot for a job without one.
            raise serializers.ValidationError(
                {"dataset": ["An external trainer's job needs a ready dataset (POST /api/v1/datasets/ first)."]}
            )
        return attrs


class JobCancelSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=MAX_REASON_LENGTH, required=False, allow_blank=True, default="")


class JobLeaseField(serializers.UUIDField):
    """The lease from ``start``. Absent or wrong: 409 ``lease_lost`` (the model decides, not us)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("required", False)
        kwargs.setdefault("allow_null", True)
        kwargs.setdefault("default", None)
        kwargs.setdefault("help_text", "The lease that start returned.")
        super().__init__(**kwargs)


class JobProgressSerializer(serializers.Serializer):
    lease = JobLeaseField()
    progress = FiniteFloatField(min_value=0.0, max_value=100.0)
    stage = serializers.CharField(max_length=200, help_text="e.g. 'Epoch 5/10'.")
    metrics = serializers.DictField(
        required=False, validators=[bounded_json(MAX_METRICS_BYTES)], help_text="The latest metrics (replaces them)."
    )
    epoch = serializers.DictField(
        required=False,
        validators=[bounded_json(MAX_EPOCH_BYTES)],
        help_text="One finished epoch (appended to the history), e.g. {'epoch': 5, 'train_loss': 0.41}.",
    )


class JobCompleteSerializer(serializers.Serializer):
    lease = JobLeaseField()
    metrics = serializers.DictField(
        required=False,
        validators=[bounded_json(MAX_METRICS_BYTES)],
        help_text="Final metrics, stored as reported. Absent: the last reported metrics.",
    )


class JobFailSerializer(serializers.Serializer):
    lease = JobLeaseField(help_text="The lease that start returned (not needed for a job never started).")
    reason = serializers.CharField(max_length=MAX_REASON_LENGTH)
