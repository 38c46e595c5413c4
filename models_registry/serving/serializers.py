"""Serializers of the serving API: predict, batch predict, feedback.

The prediction record itself is validated by ``models_registry.serving.inputs.prediction_input`` (the
one conversion from a record to what the model sees, shared by single and batch requests, and
fast enough for a thousand records); ``PredictRecordSerializer`` only documents its shape in the
OpenAPI schema.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_serializer
from rest_framework import serializers

from cases.dictionary.labels import version_labels
from models_registry.serving.inputs import RANGE_BASES
from models_registry.serving.models import Feedback


class PredictRecordSerializer(serializers.Serializer):
    """One record: a case interchange record with a patient block, or only the four fields below."""

    findings = serializers.DictField(child=serializers.FloatField(), required=False, help_text="Numeric findings.")
    symptoms = serializers.ListField(child=serializers.CharField(), required=False)
    age = serializers.JSONField(required=False, help_text='Years (0-120), or "90+". Without a patient block.')
    sex = serializers.ChoiceField(choices=["female", "male", "other", "unknown"], required=False)
    patient = serializers.DictField(
        required=False,
        help_text="The interchange patient block (mrn required). Age and sex then come from it; it is "
        "de-identified in memory and never stored.",
    )
    encounter_date = serializers.DateField(required=False, help_text="With a patient block; default today.")
    subject_key = serializers.CharField(
        required=False,
        max_length=200,
        help_text="Your id of the subject (an encounter id, say). Stored only as an HMAC pseudonym.",
    )
    allow_missing = serializers.BooleanField(
        required=False,
        default=False,
        help_text="When the cohort has a data dictionary: answer even if some model input findings are missing "
        "(they are imputed and listed in 'imputed'); at least half of them must be present. Without it, a missing "
        "input is 400 'missing_findings'.",
    )


class PredictBatchSerializer(serializers.Serializer):
    records = serializers.ListField(child=PredictRecordSerializer(), help_text="At most MAX_PREDICT_BATCH records.")
    allow_missing = serializers.BooleanField(
        required=False, default=False, help_text="The default of records that do not say allow_missing themselves."
    )


class PredictWarningSerializer(serializers.Serializer):
    code = serializers.CharField(
        help_text="'out_of_range': outside the range the model version saw in training (or, for a version that "
        "recorded none, the finding's expected range)."
    )
    field = serializers.CharField(help_text="findings.<key>, or age")
    basis = serializers.ChoiceField(
        choices=list(RANGE_BASES),
        help_text="'training_range': the train split's min and max of the model version; 'expected_range': the "
        "data dictionary's expected range (versions that recorded no training ranges).",
    )
    message = serializers.CharField()


class DiagnosisSerializer(serializers.Serializer):
    code = serializers.CharField()
    label = serializers.CharField(  # type: ignore[assignment]  # a field named like Field.label, as DRF allows
        help_text="The training data's text for the code (the code when it had none)."
    )
    display_name = serializers.CharField(
        required=False,
        allow_null=True,
        help_text="The code's name in the data dictionary version the model version was trained under (null if "
        "the code is not in its code set). Present when the record was checked against a dictionary.",
    )


class PredictionAnswerSerializer(serializers.Serializer):
    id = serializers.IntegerField(help_text="The prediction's id: give feedback on it later.")
    model_type = serializers.CharField()
    model_version = serializers.CharField()
    arm = serializers.CharField(allow_null=True, help_text="The A/B arm, when a test routes this model type.")
    diagnosis = DiagnosisSerializer()
    probabilities = serializers.DictField(child=serializers.FloatField(), help_text="{diagnosis code: probability}")
    # Present when the model type's cohort has a published data dictionary.
    dictionary_version = serializers.IntegerField(
        required=False,
        help_text="The data dictionary version the record was checked against: the one the answering model "
        "version was trained under.",
    )
    completeness = serializers.FloatField(required=False, help_text="Share of the model's input findings present.")
    imputed = serializers.ListField(
        child=serializers.CharField(),
        required=False,
        help_text="Model input findings that were missing and imputed (with allow_missing).",
    )
    warnings = PredictWarningSerializer(many=True, required=False)


# Named for the schema: "GiveFeedbackRequest" (the serializer's own name would give "FeedbackRequestRequest").
@extend_schema_serializer(component_name="GiveFeedback")
class FeedbackRequestSerializer(serializers.Serializer):
    diagnosis_code = serializers.CharField(max_length=20, help_text="The confirmed diagnosis code.")
    case = serializers.JSONField(
        required=False,
        help_text="The full case interchange record: submitted as a new case for review, by you. "
        "cohort defaults to the model type's; a missing diagnosis code is the confirmed one.",
    )

    def validate_diagnosis_code(self, value: str) -> str:
        code = value.strip().upper()
        if not code:
            raise serializers.ValidationError("Must not be blank.")
        return code

    def validate_case(self, value: Any) -> Any:
        if value is not None and not isinstance(value, dict):
            raise serializers.ValidationError("Must be a case interchange record (a JSON object).")
        return value


class FeedbackSerializer(serializers.ModelSerializer):
    # No case id: a case already on file is not submitted again, and an answer that differed from
    # a new case's would tell the sender which encounter ids exist.
    given_by = serializers.CharField(source="given_by.get_username", read_only=True)
    diagnosis_display_name = serializers.SerializerMethodField(
        help_text="The code's name in the data dictionary the version was trained under (else its cohort's "
        "current one); empty when no dictionary names it."
    )

    class Meta:
        model = Feedback
        fields = ["id", "prediction", "diagnosis_code", "diagnosis_display_name", "correct", "given_by", "created_at"]
        read_only_fields = fields

    def get_diagnosis_display_name(self, feedback: Feedback) -> str:
        prediction = feedback.prediction
        labels = version_labels(prediction.version.dictionary_id, prediction.model_type.cohort)
        return labels.diagnosis_name(feedback.diagnosis_code)
