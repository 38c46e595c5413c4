"""Serializers of the case API.

A case is shown in one of two ways, chosen by who asks (``case_serializer_for``):

- ``CaseSerializer``: the whole case, raw record included (patient block, note, findings,
  symptoms, unknown keys, external id). Only for users with ``cases.view_phi``.
- ``DeidentifiedCaseSerializer``: everyone else. Workflow metadata, the quality score and the
  de-identified record; never the patient block, the raw note, ``extra`` or the external id (an
  encounter number is an identifier). Its diagnosis label is the scrubbed one from the
  de-identified record, because the raw label is free text too.

Input: ``CaseRecordSerializer`` takes an interchange record (the README's "Case data" example) and
validates it with ``cases.interchange.parse_record``, the parser of the import, so the API and the import accept
exactly the same records. Its error messages name fields, never values, so a bad record is never
echoed back. Its declared fields only document the shape for the OpenAPI schema.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import PolymorphicProxySerializer, extend_schema_field
from rest_framework import serializers
from rest_framework.settings import api_settings

from cases.dictionary.checking import check_record
from cases.interchange import MAX_NOTE_LENGTH, SEXES, RecordError, parse_record
from cases.models import Case
from learning_engine.permissions import can_view_phi
from learning_engine.serializers import ErrorSerializer

MAX_REVIEW_TEXT = 10_000


# drf-spectacular names an enum after its field and warns when one name has two choice sets (the
# health check has a "status" too) or one choice set two names ("reason", "rejection_reason").
# So each choice set is an enum in one place only; the second occurrence is a documented string.
# (ENUM_NAME_OVERRIDES in settings would be the alternative.)
@extend_schema_field({"type": "string", "description": f"One of: {', '.join(Case.Status.values)}."})
class CaseStatusTextField(serializers.CharField):
    pass


@extend_schema_field({"type": "string", "description": f"Empty, or one of: {', '.join(Case.RejectionReason.values)}."})
class RejectionReasonTextField(serializers.CharField):
    pass


# --- Input: the interchange record ----------------------------------------------------------------


class CaseRecordPatientSerializer(serializers.Serializer):
    """The patient block. Keys not listed here are kept in the raw record (and never de-identified)."""

    mrn = serializers.CharField(max_length=255)
    name = serializers.CharField(max_length=255, required=False)
    birth_date = serializers.DateField(required=False)
    sex = serializers.ChoiceField(choices=sorted(SEXES), required=False)
    zip = serializers.CharField(max_length=255, required=False)
    phone = serializers.CharField(max_length=255, required=False)
    email = serializers.CharField(max_length=255, required=False)
    address = serializers.CharField(max_length=255, required=False)
    ssn = serializers.CharField(max_length=255, required=False)


class CaseRecordDiagnosisSerializer(serializers.Serializer):
    code = serializers.CharField(max_length=20, required=False, allow_blank=True)
    label = serializers.CharField(max_length=255, required=False, allow_blank=True)  # type: ignore[assignment]


def merge_patch(target: Any, patch: Any) -> Any:
    """JSON Merge Patch (RFC 7396): objects merge key by key, ``null`` removes a key, anything
    else (lists included) replaces. PATCH /cases/{id}/ applies its body to the current record."""
    if not isinstance(patch, Mapping):
        return patch
    result = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


class CaseRecordSerializer(serializers.Serializer):
    """An interchange record. On update, ``source`` and ``external_id`` may be left out (they
    cannot change); PATCH merges the body into the current record (RFC 7396). Unknown top-level
    keys are kept in the raw record."""

    external_id = serializers.CharField(max_length=200)
    # A field named like a Field attribute (source, label, errors) upsets the stubs, not DRF.
    source = serializers.CharField(max_length=100)  # type: ignore[assignment]
    cohort = serializers.CharField(max_length=100)
    patient = CaseRecordPatientSerializer()
    encounter_date = serializers.DateField()
    findings = serializers.DictField(child=serializers.FloatField(), required=False)
    symptoms = serializers.ListField(child=serializers.CharField(max_length=100), required=False)
    note = serializers.CharField(max_length=MAX_NOTE_LENGTH, required=False, allow_blank=True)
    diagnosis = CaseRecordDiagnosisSerializer(required=False)

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if not isinstance(data, Mapping):
            raise serializers.ValidationError(
                {api_settings.NON_FIELD_ERRORS_KEY: ["A case must be a JSON object."]}, code="invalid_record"
            )
        raw = dict(data)
        case = self.instance if isinstance(self.instance, Case) else None
        if case is not None:
            if self.partial:
                raw = merge_patch(case.to_record().to_json(), raw)
            if raw.get("external_id") is None:
                raw["external_id"] = case.external_id
        try:
            record = parse_record(raw, default_source=case.source if case is not None else None)
        except RecordError as error:
            raise serializers.ValidationError(
                {error.field or api_settings.NON_FIELD_ERRORS_KEY: [error.message]}, code="invalid_record"
            ) from None
        # The cohort's data dictionary: 400 ``unknown_cohort`` or ``dictionary_violation`` with
        # every problem (unknown keys by position only), raised past DRF's field errors.
        checked = check_record(record)
        return {"record": record, "dictionary": checked.dictionary}

    def to_representation(self, instance: Any) -> dict[str, Any]:
        # Used by the browsable API to pre-fill the edit form. The form is only offered to users
        # allowed to edit, but the raw record is guarded here too, whoever asks.
        request = self.context.get("request")
        if isinstance(instance, Case) and can_view_phi(getattr(request, "user", None)):
            return instance.to_record().to_json()
        return {}


# --- Input: review actions ------------------------------------------------------------------------


class CaseApproveSerializer(serializers.Serializer):
    note = serializers.CharField(max_length=MAX_REVIEW_TEXT, required=False, allow_blank=True, default="")


class CaseRejectSerializer(serializers.Serializer):
    reason = serializers.ChoiceField(
        choices=Case.RejectionReason.choices,
        # The default message repeats the input; ours names the choices instead.
        error_messages={"invalid_choice": f"Must be one of: {', '.join(Case.RejectionReason.values)}."},
    )
    note = serializers.CharField(max_length=MAX_REVIEW_TEXT, required=False, allow_blank=True, default="")


class CaseRetractSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=MAX_REVIEW_TEXT)


class CaseImportParamsSerializer(serializers.Serializer):
    source = serializers.RegexField(  # type: ignore[assignment]
        r"^\S+$",
        max_length=100,
        required=False,
        help_text="Source for records that do not name their own.",
        error_messages={"invalid": "Must not be empty or contain spaces."},
    )


# --- Output ---------------------------------------------------------------------------------------


class CaseDiagnosisSerializer(serializers.Serializer):
    code = serializers.CharField(source="diagnosis_code")
    label = serializers.CharField(source="diagnosis_label")  # type: ignore[assignment]


class CaseQualityIssueSerializer(serializers.Serializer):
    code = serializers.CharField()
    field = serializers.CharField()
    message = serializers.CharField()


class CaseDictionaryVersionSerializer(serializers.Serializer):
    cohort = serializers.SlugField(source="cohort.slug", help_text="The cohort whose dictionary it is.")
    version = serializers.IntegerField(help_text="The version number within the cohort.")


class CaseDictionaryIssueSerializer(serializers.Serializer):
    """A problem a later check found with a case on file. Names fields and positions, never values."""

    code = serializers.CharField()
    field = serializers.CharField()
    message = serializers.CharField()
    position = serializers.IntegerField(
        required=False, help_text="0-based entry of an unknown finding or symptom (its key is never repeated)."
    )


class CaseDictionaryFieldsMixin(serializers.Serializer):
    """Which dictionary version a case was checked against, and, for a case already on file that a
    later check refused, its problems (flagged for review). Both hold no patient data."""

    dictionary = CaseDictionaryVersionSerializer(
        read_only=True,
        allow_null=True,
        help_text="The dictionary version the record was checked against; null for a case flagged or not checked.",
    )
    dictionary_errors = CaseDictionaryIssueSerializer(
        many=True, read_only=True, help_text="Empty unless the case is flagged for review."
    )


class CaseSerializer(CaseDictionaryFieldsMixin, serializers.ModelSerializer):
    """The whole case, raw record included. Only for users with ``cases.view_phi``."""

    rejection_reason = RejectionReasonTextField(read_only=True)
    diagnosis = CaseDiagnosisSerializer(source="*", read_only=True)
    quality_issues = CaseQualityIssueSerializer(many=True, read_only=True)
    submitted_by: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(
        slug_field="username", read_only=True
    )
    last_edited_by: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(
        slug_field="username", read_only=True
    )
    reviewed_by: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = Case
        fields = [
            "id",
            "source",
            "external_id",
            "cohort",
            "status",
            "patient",
            "encounter_date",
            "findings",
            "symptoms",
            "note",
            "diagnosis",
            "extra",
            "quality_score",
            "quality_issues",
            "dictionary",
            "dictionary_errors",
            "revision",
            "submitted_by",
            "last_edited_by",
            "reviewed_by",
            "reviewed_at",
            "review_note",
            "rejection_reason",
            "deidentified",
            "deid_policy_version",
            "patient_pseudonym",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class DeidentifiedCaseSerializer(CaseDictionaryFieldsMixin, serializers.ModelSerializer):
    """A case as users without ``cases.view_phi`` see it: no raw record, no identifiers.

    Reads only columns that the view does not defer for these users (see ``cases.views``), so a
    mistake here shows up as extra queries in the query-count tests, not as a leak.
    """

    status = CaseStatusTextField(read_only=True)
    encounter_year = serializers.SerializerMethodField()
    diagnosis = serializers.SerializerMethodField()
    quality_issues = CaseQualityIssueSerializer(many=True, read_only=True)
    submitted_by: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(
        slug_field="username", read_only=True
    )
    reviewed_by: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = Case
        fields = [
            "id",
            "source",
            "cohort",
            "status",
            "encounter_year",
            "diagnosis",
            "quality_score",
            "quality_issues",
            "dictionary",
            "dictionary_errors",
            "submitted_by",
            "reviewed_by",
            "reviewed_at",
            "deidentified",
            "deid_policy_version",
            "patient_pseudonym",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    @extend_schema_field(OpenApiTypes.INT)
    def get_encounter_year(self, case: Case) -> int | None:
        return (case.deidentified or {}).get("encounter_year")

    @extend_schema_field(CaseDiagnosisSerializer)
    def get_diagnosis(self, case: Case) -> dict[str, str]:
        scrubbed = (case.deidentified or {}).get("diagnosis") or {}
        return {"code": case.diagnosis_code, "label": scrubbed.get("label", "")}


def case_serializer_for(user: Any) -> type[serializers.ModelSerializer]:
    return CaseSerializer if can_view_phi(user) else DeidentifiedCaseSerializer


def case_response(*, many: bool = False) -> PolymorphicProxySerializer:
    """The OpenAPI shape of a case response: one of the two views, depending on the caller."""
    return PolymorphicProxySerializer(
        component_name="CaseForCaller",
        serializers=[CaseSerializer, DeidentifiedCaseSerializer],
        resource_type_field_name=None,
        many=many,
    )


# --- Import, statistics and errors (documentation of response bodies) ----------------------------


class CaseImportErrorSerializer(serializers.Serializer):
    line = serializers.IntegerField(help_text="1-based line (JSON Lines) or array index + 1 (JSON array).")
    field = serializers.CharField(help_text="Dotted path of the bad field; empty for the whole record.")
    error = serializers.CharField()


class CaseImportReportSerializer(serializers.Serializer):
    read = serializers.IntegerField()
    created = serializers.IntegerField()
    updated = serializers.IntegerField()
    unchanged = serializers.IntegerField()
    failed = serializers.IntegerField()
    errors = CaseImportErrorSerializer(many=True)  # type: ignore[assignment]
    errors_truncated = serializers.BooleanField()


class CaseHistogramBinSerializer(serializers.Serializer):
    low = serializers.FloatField()
    high = serializers.FloatField()
    count = serializers.IntegerField()


class CaseReviewerCountSerializer(serializers.Serializer):
    reviewer = serializers.CharField()
    reviews = serializers.IntegerField()
    approved = serializers.IntegerField()
    rejected = serializers.IntegerField()


class CaseDiagnosisCountSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="ICD-10-CM code as recorded (empty: no diagnosis).")
    display_name = serializers.CharField(
        help_text="The code's name in its cohort's data dictionary; empty when no dictionary names it."
    )
    cases = serializers.IntegerField()


class CaseFindingSummarySerializer(serializers.Serializer):
    cohort = serializers.CharField()
    dictionary_version = serializers.IntegerField(help_text="The cohort's current dictionary version.")
    key = serializers.CharField()
    display_name = serializers.CharField()
    unit = serializers.CharField(help_text="UCUM code; empty when the finding has none.")
    unit_display = serializers.CharField(help_text="The unit as printed (Cel: °C; 1, dimensionless: empty).")
    value_type = serializers.ChoiceField(choices=["number", "integer", "boolean", "category"])
    cases = serializers.IntegerField(help_text="Cases that passed a dictionary check and carry a value.")
    mean = serializers.FloatField(
        allow_null=True,
        help_text="Mean of those values (booleans: the share of 1s); null for categories and below 5 cases.",
    )
    outside_expected_range = serializers.IntegerField(help_text="Values outside the dictionary's expected range.")


class CaseStatisticsSerializer(serializers.Serializer):
    total = serializers.IntegerField()
    by_status = serializers.DictField(child=serializers.IntegerField())
    by_cohort = serializers.DictField(child=serializers.IntegerField())
    by_diagnosis = serializers.DictField(child=serializers.IntegerField())
    diagnoses = CaseDiagnosisCountSerializer(many=True, help_text="by_diagnosis with each code's display name.")
    findings = CaseFindingSummarySerializer(
        many=True, help_text="Per cohort with a data dictionary, each finding with its name and unit."
    )
    quality_histogram = CaseHistogramBinSerializer(many=True)
    deidentified = serializers.IntegerField(help_text="Approved cases with a de-identified record.")
    rejected_by_reason = serializers.DictField(child=serializers.IntegerField())
    reviews_by_reviewer = CaseReviewerCountSerializer(many=True)


class CaseErrorSerializer(ErrorSerializer):
    """Every error of the case API: a machine-readable ``code`` and a message, sometimes more."""

    report = CaseImportReportSerializer(required=False, help_text="The import report (code 'invalid_records').")
